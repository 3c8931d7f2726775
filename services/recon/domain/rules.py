"""Matching rules per channel (a statement source: one simulated bank), from config.

A new CSV bank needs only a block in the channels file: its column mapping, its settlement
window and cut-off. ``rules_version`` is a hash of the effective rules, stored with every run,
so a result can always be traced to the rules that produced it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

PASSES = ("our_reference", "bank_reference", "amount_date", "one_to_many", "fee_adjusted")
FORMATS = ("auto", "csv", "mt940", "camt053", "camt054", "bai2")
GROUP_KEYS = ("currency", "record_date", "channel_id")
_CHANNEL = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,62}$")
_CUTOFF = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class RulesError(ValueError):
    """The channels file is invalid; the message names the channel and the key."""


@dataclass(frozen=True)
class ChannelRules:
    channel: str
    format: str = "auto"
    csv_mapping: dict[str, Any] | None = None
    # T+N: a payout created on day T may appear on any statement up to T+N (value date).
    window_days: int = 2
    # The statement for business day D is due by this UTC time on D+1 (statement_missing).
    cutoff: str = "06:00"
    expect_daily: bool = False  # raise statement_missing when no statement by the cut-off
    # "net": the line amount is the principal; "gross": it includes the bank's fee.
    amount_basis: str = "net"
    currencies: tuple[str, ...] = ()  # accepted currencies; empty = any
    # The channel's own accounts at the bank (IBAN or number); a statement of any other account
    # is quarantined (account_unknown). Empty = not checked.
    accounts: tuple[str, ...] = ()
    passes: tuple[str, ...] = PASSES
    one_to_many_group_by: tuple[str, ...] = ("currency", "record_date")
    check_fees: bool = True
    # The bank books each line's fee in the balance (closing = opening + lines - fees).
    fees_in_balance: bool = True
    lookback_days: int = 7  # how far back the export reaches for carried and returned payouts

    def version(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, default=str).encode()
        return "r_" + hashlib.sha256(payload).hexdigest()[:16]

    def cutoff_at(self, business_date: date) -> datetime:
        from datetime import UTC

        hours, minutes = (int(p) for p in self.cutoff.split(":"))
        return datetime.combine(business_date + timedelta(days=1), time(hours, minutes), UTC)


@dataclass(frozen=True)
class RulesBook:
    defaults: ChannelRules
    channels: dict[str, ChannelRules] = field(default_factory=dict)

    def for_channel(self, channel: str) -> ChannelRules:
        found = self.channels.get(channel)
        return found if found is not None else replace(self.defaults, channel=channel)

    def configured(self) -> list[str]:
        return sorted(self.channels)


def account_key(account: str) -> str:
    """An account as compared: no spaces, upper case, without a ``BIC/`` prefix (MT940)."""
    return account.rsplit("/", 1)[-1].replace(" ", "").upper()


def valid_channel(name: str) -> bool:
    return bool(_CHANNEL.match(name))


def _rules(channel: str, raw: dict[str, Any], base: ChannelRules) -> ChannelRules:
    known = set(ChannelRules.__dataclass_fields__) - {"channel"}
    unknown = set(raw) - known
    if unknown:
        raise RulesError(f"channel {channel}: unknown key(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("currencies", "passes", "one_to_many_group_by", "accounts"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RulesError(f"channel {channel}: {key} must be a list of strings")
            value = tuple(value)
        values[key] = value
    rules = replace(base, channel=channel, **values)
    _validate(rules)
    return rules


def _validate(rules: ChannelRules) -> None:
    where = f"channel {rules.channel}"
    if rules.format not in FORMATS:
        raise RulesError(f"{where}: format must be one of {', '.join(FORMATS)}")
    if not isinstance(rules.window_days, int) or not 0 <= rules.window_days <= 30:
        raise RulesError(f"{where}: window_days must be an integer 0..30")
    if not isinstance(rules.lookback_days, int) or not 1 <= rules.lookback_days <= 90:
        raise RulesError(f"{where}: lookback_days must be an integer 1..90")
    if not isinstance(rules.cutoff, str) or not _CUTOFF.match(rules.cutoff):
        raise RulesError(f"{where}: cutoff must be HH:MM (UTC)")
    if rules.amount_basis not in ("net", "gross"):
        raise RulesError(f"{where}: amount_basis must be net or gross")
    if any(not re.fullmatch(r"[A-Z]{3}", c) for c in rules.currencies):
        raise RulesError(f"{where}: currencies must be ISO 4217 codes")
    if not rules.passes or any(p not in PASSES for p in rules.passes):
        raise RulesError(f"{where}: passes must be a non-empty subset of {', '.join(PASSES)}")
    if len(set(rules.passes)) != len(rules.passes):
        raise RulesError(f"{where}: passes must not repeat")
    if any(k not in GROUP_KEYS for k in rules.one_to_many_group_by):
        raise RulesError(f"{where}: one_to_many_group_by keys must be among {GROUP_KEYS}")
    if rules.csv_mapping is not None and not isinstance(rules.csv_mapping, dict):
        raise RulesError(f"{where}: csv_mapping must be a mapping")


def load_rules(document: dict[str, Any] | None) -> RulesBook:
    """Build the rules from the parsed channels file (``None`` = built-in defaults)."""
    document = document or {}
    if not isinstance(document, dict) or set(document) - {"defaults", "channels"}:
        raise RulesError("channels file: top-level keys are 'defaults' and 'channels'")
    defaults = _rules("default", document.get("defaults") or {}, ChannelRules(channel="default"))
    channels: dict[str, ChannelRules] = {}
    raw_channels = document.get("channels") or {}
    if not isinstance(raw_channels, dict):
        raise RulesError("channels file: 'channels' must be a mapping")
    for name, raw in raw_channels.items():
        if not isinstance(name, str) or not valid_channel(name):
            raise RulesError(f"channel name {name!r} must match {_CHANNEL.pattern}")
        channels[name] = _rules(name, raw or {}, defaults)
    return RulesBook(defaults=defaults, channels=channels)
