"""Compiled, immutable rule sets: what the evaluator runs.

Compilation turns a validated document into per-merchant plans arranged for a fast hot path:
list rules become one hash lookup per beneficiary field whatever their number, velocity rules
sharing a (scope, window, currency) share one counter read, and so on. A RuleSet is never
mutated after compilation; the engine swaps whole RuleSets, so one evaluation sees one version.
"""

from __future__ import annotations

import hashlib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import msgspec

from services.payout.risk import document as d
from services.payout.risk.limits import RiskLimits
from services.payout.risk.model import SEVERITY, FiredRule, Outcome

FIELD_INDEX = {"account": 0, "bank": 1, "name": 2}
DEFAULT_REASONS = {
    ("blocklist", "account"): "beneficiary_account_blocklisted",
    ("blocklist", "bank"): "beneficiary_bank_blocklisted",
    ("blocklist", "name"): "beneficiary_name_blocklisted",
    ("allowlist", "account"): "beneficiary_account_not_allowlisted",
    ("allowlist", "bank"): "beneficiary_bank_not_allowlisted",
    ("allowlist", "name"): "beneficiary_name_not_allowlisted",
}
ALL_CURRENCIES = "*"


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """What every compiled rule carries; the kind-specific parameters follow in subclasses."""

    id: str
    type: str
    outcome: Outcome
    severity: int
    reason_code: str
    currency: str | None
    # (field index, normalised values) of the exempting allowlist, if any.
    exempt: tuple[int, frozenset[str]] | None
    # True when the rule has neither a currency filter nor an exemption (the common case).
    unconditional: bool

    def fired(self, detail: str, reason_code: str | None = None) -> FiredRule:
        return FiredRule(
            rule_id=self.id,
            rule_type=self.type,
            outcome=self.outcome,
            reason_code=reason_code or self.reason_code,
            detail=detail,
        )


@dataclass(frozen=True, slots=True)
class ListRule(CompiledRule):
    field: int
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class VelocityRule(CompiledRule):
    scope: str
    window_buckets: int
    window_s: int
    max_count: int | None
    max_amount_minor: int | None


@dataclass(frozen=True, slots=True)
class VelocityGroup:
    """Rules reading the same counter series: one lookup per group, one search per window."""

    scope: str
    series_currency: str  # a currency code, or "*" for the all-currency count
    windows: tuple[VelocityWindow, ...]


@dataclass(frozen=True, slots=True)
class VelocityWindow:
    buckets: int
    # The lowest limits among the rules: a count and amount at or under both fire none of them,
    # so the common case costs two comparisons, not one per rule.
    count_floor: int
    amount_floor: int
    rules: tuple[VelocityRule, ...]


@dataclass(frozen=True, slots=True)
class AnomalyRule(CompiledRule):
    multiple_num: int
    multiple_den: int
    multiple_text: str
    min_samples: int
    min_amount_minor: int | None


@dataclass(frozen=True, slots=True)
class CooldownRule(CompiledRule):
    cooldown_ms: int
    cooldown_s: int
    min_amount_minor: int | None


@dataclass(frozen=True, slots=True)
class TimeRule(CompiledRule):
    timezone: str
    start_min: int
    end_min: int
    days: frozenset[int]  # datetime.weekday() numbers
    fires_inside: bool
    window_text: str


@dataclass(frozen=True, slots=True)
class TimeGroup:
    zone: zoneinfo.ZoneInfo
    rules: tuple[TimeRule, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """Every rule that judges one merchant, arranged by what it reads."""

    rules: tuple[CompiledRule, ...]
    # id() of the blocklist rules of this plan; the value index is shared (RuleSet.blocked)
    blocklist_ids: frozenset[int]
    allowlists: tuple[ListRule, ...]
    velocity: tuple[VelocityGroup, ...]
    anomaly: tuple[AnomalyRule, ...]
    # The smallest multiple (num, den) and sample size among anomaly rules: below both, none fires.
    anomaly_floor: tuple[int, int, int]
    cooldown: tuple[CooldownRule, ...]
    cooldown_ms_max: int  # a beneficiary first paid longer ago than this is new to no rule
    time: tuple[TimeGroup, ...]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One published version of the rules; immutable."""

    version: int
    digest: str  # sha256 of canonical_json
    canonical_json: bytes  # the validated document, keys sorted: what to store and show
    limits: RiskLimits
    # normalised value → blocklist rules of any plan, one mapping per field (account, bank,
    # name); shared so that a list is indexed once however many merchants use it
    blocked: tuple[Mapping[str, tuple[ListRule, ...]], ...]
    default_plan: Plan
    merchant_plans: Mapping[str, Plan]

    @property
    def document(self) -> dict[str, Any]:
        """A fresh copy of the canonical document as plain data."""
        return msgspec.json.decode(self.canonical_json)

    def plan_for(self, merchant_id: str) -> Plan:
        return self.merchant_plans.get(merchant_id, self.default_plan)

    @property
    def rule_count(self) -> int:
        """Distinct compiled rules (a default rule shared by many merchants counts once)."""
        plans = (self.default_plan, *self.merchant_plans.values())
        return len({id(r) for p in plans for r in p.rules})


def compile_ruleset(
    source: bytes | str | Mapping[str, Any],
    *,
    version: int,
    limits: RiskLimits | None = None,
    fmt: str = "yaml",
) -> RuleSet:
    """Validate and compile; raises ``RuleSetInvalid`` naming every problem.

    ``source`` is the YAML/JSON text (``fmt``) or already-parsed plain data. ``version`` is
    assigned by whoever stores the rule set (a database sequence), not by the document.
    """
    if version < 1:
        raise ValueError("version must be a positive integer")
    limits = limits or RiskLimits()
    data = source if isinstance(source, Mapping) else d.parse_source(source, limits=limits, fmt=fmt)
    valid = d.validate_document(dict(data) if isinstance(data, Mapping) else data, limits=limits)
    compiler = _Compiler(limits)
    default_plan = compiler.plan(d.effective_rules(valid.defaults, None))
    plans = {
        mid: compiler.plan(d.effective_rules(valid.defaults, section))
        for mid, section in valid.merchants.items()
    }
    canonical_bytes = msgspec.json.encode(valid.canonical, order="sorted")
    return RuleSet(
        version=version,
        digest=hashlib.sha256(canonical_bytes).hexdigest(),
        canonical_json=canonical_bytes,
        limits=limits,
        blocked=tuple(
            MappingProxyType({k: tuple(v) for k, v in index.items()}) for index in compiler.blocked
        ),
        default_plan=default_plan,
        merchant_plans=MappingProxyType(plans),
    )


class _Compiler:
    """Compiles each document rule once and shares it between the plans that use it, so a
    rule set's memory grows with its rules and list entries, not with merchants times defaults."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        # (id of the document rule, id of its exempting allowlist rule) → compiled rule
        self.compiled: dict[tuple[int, int], CompiledRule] = {}
        self.values: dict[int, frozenset[str]] = {}  # id of a list rule → normalised values
        self.blocked: tuple[dict[str, list[ListRule]], ...] = ({}, {}, {})
        self.plans: dict[tuple[int, ...], Plan] = {}

    def list_values(self, r: d.BlocklistRule | d.AllowlistRule) -> frozenset[str]:
        values = self.values.get(id(r))
        if values is None:
            values = self.values[id(r)] = d.normalised_values(r.field, r.values)
        return values

    def plan(self, rules: tuple[d.Rule, ...]) -> Plan:
        allowlists_by_id = {r.id: r for r in rules if isinstance(r, d.AllowlistRule)}
        compiled = []
        for r in rules:
            exempt_rule = allowlists_by_id[r.exempt_allowlist] if r.exempt_allowlist else None
            key = (id(r), id(exempt_rule))
            rule = self.compiled.get(key)
            if rule is None:
                rule = self.compiled[key] = self.compile(r, exempt_rule)
                if isinstance(rule, ListRule) and rule.type == "blocklist":
                    for value in rule.values:
                        self.blocked[rule.field].setdefault(value, []).append(rule)
            compiled.append(rule)
        identity = tuple(id(c) for c in compiled)
        plan = self.plans.get(identity)
        if plan is None:
            plan = self.plans[identity] = _arrange(tuple(compiled))
        return plan

    def compile(self, r: d.Rule, exempt_rule: d.AllowlistRule | None) -> CompiledRule:
        base: dict[str, Any] = {
            "id": r.id,
            "outcome": r.outcome,
            "severity": SEVERITY[r.outcome],
            "currency": r.currency,
            "exempt": (
                (FIELD_INDEX[exempt_rule.field], self.list_values(exempt_rule))
                if exempt_rule is not None
                else None
            ),
            "unconditional": r.currency is None and exempt_rule is None,
        }
        if isinstance(r, d.BlocklistRule | d.AllowlistRule):
            kind = "blocklist" if isinstance(r, d.BlocklistRule) else "allowlist"
            return ListRule(
                type=kind,
                reason_code=r.reason_code or DEFAULT_REASONS[(kind, r.field)],
                field=FIELD_INDEX[r.field],
                values=self.list_values(r),
                **base,
            )
        if isinstance(r, d.VelocityRule):
            return VelocityRule(
                type="velocity",
                reason_code=r.reason_code or "",  # "": the evaluator says count or amount
                scope=r.scope,
                window_buckets=r.window_s * 1000 // self.limits.bucket_ms,
                window_s=r.window_s,
                max_count=r.max_count,
                max_amount_minor=r.max_amount_minor,
                **base,
            )
        if isinstance(r, d.AmountAnomalyRule):
            num, den = d.parse_multiple(r.multiple)
            return AnomalyRule(
                type="amount_anomaly",
                reason_code=r.reason_code or "amount_anomaly",
                multiple_num=num,
                multiple_den=den,
                multiple_text=str(r.multiple),
                min_samples=r.min_samples,
                min_amount_minor=r.min_amount_minor,
                **base,
            )
        if isinstance(r, d.NewBeneficiaryRule):
            return CooldownRule(
                type="new_beneficiary",
                reason_code=r.reason_code or "new_beneficiary_cooldown",
                cooldown_ms=r.cooldown_s * 1000,
                cooldown_s=r.cooldown_s,
                min_amount_minor=r.min_amount_minor,
                **base,
            )
        assert isinstance(r, d.TimeWindowRule)
        return TimeRule(
            type="time_window",
            reason_code=r.reason_code
            or ("inside_time_window" if r.fires_when == "inside" else "outside_time_window"),
            timezone=r.timezone,
            start_min=d.parse_hhmm(r.start),
            end_min=d.parse_hhmm(r.end),
            days=frozenset(d.DAYS.index(day) for day in (r.days or d.DAYS)),
            fires_inside=r.fires_when == "inside",
            window_text=f"{r.start}-{r.end} {r.timezone}",
            **base,
        )


def _arrange(rules: tuple[CompiledRule, ...]) -> Plan:
    allowlists: list[ListRule] = []
    velocity: dict[tuple[str, str], dict[int, list[VelocityRule]]] = {}
    anomaly: list[AnomalyRule] = []
    cooldown: list[CooldownRule] = []
    time: dict[str, list[TimeRule]] = {}
    for rule in rules:
        if isinstance(rule, ListRule):
            if rule.type == "allowlist" and rule.outcome != "allow":
                allowlists.append(rule)
        elif isinstance(rule, VelocityRule):
            windows = velocity.setdefault((rule.scope, rule.currency or ALL_CURRENCIES), {})
            windows.setdefault(rule.window_buckets, []).append(rule)
        elif isinstance(rule, AnomalyRule):
            anomaly.append(rule)
        elif isinstance(rule, CooldownRule):
            cooldown.append(rule)
        else:
            assert isinstance(rule, TimeRule)
            time.setdefault(rule.timezone, []).append(rule)
    return Plan(
        rules=rules,
        blocklist_ids=frozenset(
            id(r) for r in rules if isinstance(r, ListRule) and r.type == "blocklist"
        ),
        allowlists=tuple(allowlists),
        velocity=tuple(
            VelocityGroup(
                scope=scope,
                series_currency=currency,
                windows=tuple(_window(w, rs) for w, rs in sorted(windows.items())),
            )
            for (scope, currency), windows in velocity.items()
        ),
        anomaly=tuple(anomaly),
        anomaly_floor=_anomaly_floor(anomaly),
        cooldown=tuple(cooldown),
        cooldown_ms_max=max((c.cooldown_ms for c in cooldown), default=0),
        time=tuple(TimeGroup(zone=zoneinfo.ZoneInfo(tz), rules=tuple(v)) for tz, v in time.items()),
    )


_NO_LIMIT = 2**63


def _window(buckets: int, rules: list[VelocityRule]) -> VelocityWindow:
    return VelocityWindow(
        buckets=buckets,
        count_floor=min((r.max_count for r in rules if r.max_count is not None), default=_NO_LIMIT),
        amount_floor=min(
            (r.max_amount_minor for r in rules if r.max_amount_minor is not None),
            default=_NO_LIMIT,
        ),
        rules=tuple(rules),
    )


def _anomaly_floor(rules: list[AnomalyRule]) -> tuple[int, int, int]:
    if not rules:
        return (_NO_LIMIT, 1, _NO_LIMIT)
    smallest = min(rules, key=lambda r: Fraction(r.multiple_num, r.multiple_den))
    return (smallest.multiple_num, smallest.multiple_den, min(r.min_samples for r in rules))
