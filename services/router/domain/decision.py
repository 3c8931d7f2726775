"""Which channel gets a payout: eligibility filters, expected value, then merchant rules.

1. Filters, in a fixed order; the first that fails names the reason a channel was excluded.
2. Score: expected value = success_rate * (amount - fee) in minor units; latency breaks ties.
3. Merchant rules: ``exclude`` removes channels, ``pin`` keeps only its channels, ``prefer``
   ranks its channels first. A channel the TCC try already reserved is kept when still eligible.

Every candidate, its score and the filter that removed it is returned, so the decision can be
stored and read back (``GET /v1/decisions/{attempt_id}``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.router.domain.config import Channel, RuleBook
from services.router.domain.health import PPM, LiveView

# Filter names are part of the wire (decision records, 422 no_eligible_channel): keep stable.
FILTER_DISABLED = "disabled"
FILTER_KILL_SWITCH = "kill_switch"
FILTER_CURRENCY = "currency"
FILTER_AMOUNT_RANGE = "amount_range"
FILTER_BENEFICIARY_BANK = "beneficiary_bank"
FILTER_CUTOFF = "cutoff"
FILTER_MAINTENANCE = "maintenance"
FILTER_DAILY_QUOTA = "daily_quota"
FILTER_BREAKER_OPEN = "breaker_open"
FILTER_ALREADY_ATTEMPTED = "already_attempted"
FILTER_MERCHANT_EXCLUDE = "merchant_rule_exclude"
FILTER_MERCHANT_PIN = "merchant_rule_pin"


@dataclass(frozen=True, slots=True)
class PayoutFacts:
    merchant_id: str
    amount_minor: int
    currency: str
    beneficiary_bank: str
    now: datetime  # UTC, for cut-off and maintenance windows


@dataclass(slots=True)
class Candidate:
    channel_id: str
    bank: str
    excluded_by: str | None
    detail: str | None
    fee_minor: int
    success_rate_ppm: int
    latency_ms: float
    expected_value_minor: int | None
    preferred: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "channel_id": self.channel_id,
            "bank": self.bank,
            "eligible": self.excluded_by is None,
            "excluded_by": self.excluded_by,
            "detail": self.detail,
            "fee_minor": self.fee_minor,
            "success_rate_ppm": self.success_rate_ppm,
            "latency_ms": round(self.latency_ms, 1),
            "expected_value_minor": self.expected_value_minor,
            "preferred": self.preferred,
        }


# An excluded channel, kept as a plain tuple on the hot path and turned into a Candidate only
# when the decision is recorded: most channels are excluded, and a tuple is much cheaper.
_Excluded = tuple[Channel, str, "str | None", int, "LiveView"]


@dataclass(slots=True)
class Decision:
    chosen: Candidate | None
    reason: str
    slots: list[Candidate | _Excluded]  # in config order
    _candidates: list[Candidate] | None = None

    @property
    def candidates(self) -> list[Candidate]:
        if self._candidates is None:
            self._candidates = [
                s
                if isinstance(s, Candidate)
                else Candidate(
                    channel_id=s[0].id,
                    bank=s[0].bank,
                    excluded_by=s[1],
                    detail=s[2],
                    fee_minor=s[3],
                    success_rate_ppm=s[4].success_rate_ppm,
                    latency_ms=s[4].latency_ms,
                    expected_value_minor=None,
                )
                for s in self.slots
            ]
        return self._candidates

    @property
    def chosen_id(self) -> str | None:
        return None if self.chosen is None else self.chosen.channel_id

    def exclusions(self) -> list[dict[str, Any]]:
        return [
            {"channel_id": c.channel_id, "excluded_by": c.excluded_by, "detail": c.detail}
            for c in self.candidates
            if c.excluded_by is not None
        ]


_UNKNOWN = LiveView(success_rate_ppm=0, latency_ms=0.0, breaker_allows=True)


def decide(
    facts: PayoutFacts,
    channels: tuple[Channel, ...],
    live: Mapping[str, LiveView],
    quota_used_minor: Mapping[str, int],
    rules: RuleBook,
    *,
    killed: Collection[str] = (),
    attempted: Collection[str] = (),
    reserved_channel: str | None = None,
) -> Decision:
    amount = facts.amount_minor
    currency = facts.currency
    bank_code = facts.beneficiary_bank
    minute = facts.now.hour * 60 + facts.now.minute
    slots: list[Candidate | _Excluded] = []
    eligible: list[Candidate] = []
    for ch in channels:
        view = live.get(ch.id, _UNKNOWN)
        fee = ch.fee_minor + amount * ch.fee_bps // 10_000
        excluded: str | None = None
        detail: str | None = None
        if not ch.enabled:
            excluded = FILTER_DISABLED
        elif ch.id in killed:
            excluded, detail = FILTER_KILL_SWITCH, "operator kill switch engaged"
        elif ch.currency != currency:
            excluded, detail = FILTER_CURRENCY, f"channel pays {ch.currency}"
        elif not ch.amount_min_minor <= amount <= ch.amount_max_minor:
            excluded = FILTER_AMOUNT_RANGE
            detail = f"accepts {ch.amount_min_minor}..{ch.amount_max_minor}"
        elif ch.beneficiary_banks is not None and bank_code not in ch.beneficiary_banks:
            excluded, detail = FILTER_BENEFICIARY_BANK, f"does not reach {bank_code}"
        elif ch.cutoff_min is not None and minute >= ch.cutoff_min:
            excluded, detail = FILTER_CUTOFF, "past today's cut-off"
        elif ch.maintenance and any(w.contains(minute) for w in ch.maintenance):
            excluded, detail = FILTER_MAINTENANCE, "inside a maintenance window"
        elif quota_used_minor.get(ch.id, 0) + amount > ch.daily_quota_minor:
            excluded = FILTER_DAILY_QUOTA
            detail = f"used {quota_used_minor.get(ch.id, 0)} of {ch.daily_quota_minor}"
        elif not view.breaker_allows:
            excluded, detail = FILTER_BREAKER_OPEN, "circuit breaker open"
        elif ch.id in attempted:
            excluded, detail = FILTER_ALREADY_ATTEMPTED, "tried earlier for this payout"
        if excluded is not None:
            slots.append((ch, excluded, detail, fee, view))
            continue
        candidate = Candidate(
            channel_id=ch.id,
            bank=ch.bank,
            excluded_by=None,
            detail=None,
            fee_minor=fee,
            success_rate_ppm=view.success_rate_ppm,
            latency_ms=view.latency_ms,
            expected_value_minor=view.success_rate_ppm * (amount - fee) // PPM,
        )
        slots.append(candidate)
        eligible.append(candidate)

    pinned_by: str | None = None
    preferred_by: str | None = None
    if eligible:
        for rule in rules.for_merchant(facts.merchant_id):
            if not rule.matches(amount, currency, bank_code):
                continue
            if rule.action == "exclude":
                for c in eligible:
                    if c.channel_id in rule.channels:
                        c.excluded_by, c.detail = FILTER_MERCHANT_EXCLUDE, f"rule {rule.id}"
                        c.expected_value_minor = None
            elif rule.action == "pin":
                pinned_by = pinned_by or rule.id
                for c in eligible:
                    if c.channel_id not in rule.channels and c.excluded_by is None:
                        c.excluded_by, c.detail = FILTER_MERCHANT_PIN, f"rule {rule.id}"
                        c.expected_value_minor = None
            else:
                for c in eligible:
                    if c.channel_id in rule.channels:
                        c.preferred = True
                        preferred_by = preferred_by or rule.id
        eligible = [c for c in eligible if c.excluded_by is None]

    if not eligible:
        return Decision(None, "no_eligible_channel", slots)
    if reserved_channel is not None:
        for c in eligible:
            if c.channel_id == reserved_channel:
                return Decision(c, "reserved_by_tcc_try", slots)
    best = min(
        eligible,
        key=lambda c: (
            not c.preferred,
            -(c.expected_value_minor or 0),
            c.latency_ms,
            c.channel_id,
        ),
    )
    if best.preferred:
        reason = f"preferred_by_rule:{preferred_by}"
    elif pinned_by is not None:
        reason = f"pinned_by_rule:{pinned_by}"
    else:
        reason = "highest_expected_value"
    return Decision(best, reason, slots)
