"""The rule-set document: its wire shape, safe parsing and validation.

A document is YAML or JSON (parsed with ``yaml.safe_load`` / msgspec, never evaluated). Every
problem found is reported at once, each naming where it is (section and rule id), the field
and what is wrong, so risk staff can fix a file in one pass. Compilation (``ruleset.py``)
only ever sees a document that passed every check here.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

import msgspec
import yaml

from services.payout.risk.limits import RiskLimits
from services.payout.risk.model import Outcome
from services.payout.risk.normalise import normalise_account, normalise_bank, normalise_name

FORMAT_VERSION = 1

RuleIdText = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")]
ReasonCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{2,63}$")]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
MerchantIdText = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}$")]
Seconds = Annotated[int, msgspec.Meta(ge=1)]
MinorUnits = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000_000_000)]
ListField = Literal["account", "bank", "name"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


class _Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, tag_field="type"):
    id: RuleIdText
    outcome: Outcome
    description: str = ""
    # Overrides the rule type's default reason code (shown to operators, never to merchants).
    reason_code: ReasonCode | None = None
    # When set, the rule only applies to payouts in this currency.
    currency: CurrencyCode | None = None
    # Id of an allowlist rule: beneficiaries on that list are exempt from this rule.
    exempt_allowlist: RuleIdText | None = None
    enabled: bool = True


class BlocklistRule(_Rule, tag="blocklist"):
    """Fires when the beneficiary's field is on the list."""

    field: ListField
    values: Annotated[list[str], msgspec.Meta(min_length=1)]


class AllowlistRule(_Rule, tag="allowlist"):
    """Fires when the beneficiary's field is NOT on the list.

    With ``outcome: allow`` it never fires and only serves other rules' ``exempt_allowlist``.
    """

    field: ListField
    values: Annotated[list[str], msgspec.Meta(min_length=1)]


class VelocityRule(_Rule, tag="velocity"):
    """Fires when this payout would take the count or amount in the window over the limit."""

    scope: Literal["merchant", "beneficiary", "merchant_beneficiary"]
    window_s: Seconds
    max_count: Annotated[int, msgspec.Meta(ge=0)] | None = None
    max_amount_minor: MinorUnits | None = None


class AmountAnomalyRule(_Rule, tag="amount_anomaly"):
    """Fires when the amount is above ``multiple`` times the merchant's recent median amount."""

    multiple: int | float | str
    min_samples: Annotated[int, msgspec.Meta(ge=1)]
    min_amount_minor: MinorUnits | None = None


class NewBeneficiaryRule(_Rule, tag="new_beneficiary"):
    """Fires while the merchant's first payout to this beneficiary is under ``cooldown_s`` old."""

    cooldown_s: Seconds
    min_amount_minor: MinorUnits | None = None


class TimeWindowRule(_Rule, tag="time_window"):
    """Fires when the payout's local time is inside (or outside) a daily window."""

    timezone: str
    start: str
    end: str
    days: list[Day] | None = None
    fires_when: Literal["inside", "outside"] = "outside"


Rule = (
    BlocklistRule
    | AllowlistRule
    | VelocityRule
    | AmountAnomalyRule
    | NewBeneficiaryRule
    | TimeWindowRule
)
RULE_TYPES: tuple[str, ...] = (
    "blocklist",
    "allowlist",
    "velocity",
    "amount_anomaly",
    "new_beneficiary",
    "time_window",
)


class MerchantSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # False: only this section's rules apply to the merchant.
    inherit_defaults: bool = True
    # Default rule ids that do not apply to this merchant.
    disable: list[RuleIdText] = []
    # A rule with the id of a default rule replaces it for this merchant.
    rules: list[Any] = []


class Document(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    format: Literal[1]
    description: str = ""
    defaults: list[Any] = []
    merchants: dict[MerchantIdText, MerchantSection] = {}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a rule-set document."""

    where: str  # "defaults[2]", "merchants.mer_1.rules[0]", "document"
    rule_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [self.where]
        if self.rule_id is not None:
            parts.append(f"rule {self.rule_id!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        return f"{', '.join(parts)}: {self.message}"


class RuleSetInvalid(ValueError):
    """The document is not a valid rule set; ``problems`` lists every reason."""

    code = "risk_ruleset_invalid"

    def __init__(self, problems: list[Problem]) -> None:
        assert problems
        self.problems = tuple(problems)
        shown = "; ".join(str(p) for p in self.problems[:20])
        more = f" (and {len(self.problems) - 20} more)" if len(self.problems) > 20 else ""
        super().__init__(f"invalid rule set: {shown}{more}")


@dataclass(frozen=True, slots=True)
class Section:
    """A validated list of rules: the defaults or one merchant's own rules."""

    rules: tuple[Rule, ...]
    inherit_defaults: bool = True
    disable: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ValidDocument:
    defaults: Section
    merchants: Mapping[str, Section]
    canonical: dict[str, Any]  # the document as plain data, for storage and digests


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors/aliases: a few hundred bytes of nested aliases expand into
    billions of nodes when walked ("billion laughs"); rule files have no use for them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in rule sets", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_source(raw: bytes | str, *, limits: RiskLimits, fmt: str = "yaml") -> Any:
    """Bytes/text → plain data, safely (no tags, no code). JSON is also valid YAML."""
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > limits.document_bytes_max:
        raise RuleSetInvalid(
            [Problem("document", None, None, f"{size} bytes is over {limits.document_bytes_max}")]
        )
    try:
        if fmt == "json":
            return msgspec.json.decode(raw)
        if fmt == "yaml":
            return yaml.load(raw, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except msgspec.DecodeError as exc:
        raise RuleSetInvalid([Problem("document", None, None, f"not valid JSON: {exc}")]) from exc
    except yaml.YAMLError as exc:
        raise RuleSetInvalid([Problem("document", None, None, f"not valid YAML: {exc}")]) from exc
    raise ValueError(f"unknown format {fmt!r}: use 'yaml' or 'json'")


_AT = re.compile(r"^(?P<msg>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING_OR_UNKNOWN = re.compile(r"field `(?P<field>[^`]+)`")


def _split_msgspec_error(exc: msgspec.ValidationError) -> tuple[str | None, str]:
    """msgspec says ``Expected `int`, got `str` - at `$.window_s```; → (field, message)."""
    m = _AT.match(str(exc))
    assert m is not None
    message, path = m.group("msg"), m.group("path")
    field: str | None = None
    if path:
        field = path.lstrip(".").split(".")[0].split("[")[0] or None
        if m.group("key"):
            message = f"{message} (a key of {path.lstrip('.')})"
        elif path.lstrip(".") != field:
            message = f"{message} (at {path.lstrip('.')})"
    else:
        found = _MISSING_OR_UNKNOWN.search(message)
        if found:
            field = found.group("field")
    return field, message


def validate_document(data: Any, *, limits: RiskLimits) -> ValidDocument:
    """Plain data → a ValidDocument, or RuleSetInvalid listing every problem found."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise RuleSetInvalid([Problem("document", None, None, f"must be a mapping, got {kind}")])
    try:
        doc = msgspec.convert(data, type=Document, strict=True)
    except msgspec.ValidationError as exc:
        field, message = _split_msgspec_error(exc)
        raise RuleSetInvalid([Problem("document", None, field, message)]) from exc
    if len(doc.merchants) > limits.merchants_max:
        problems.append(
            Problem("merchants", None, None, f"{len(doc.merchants)} over {limits.merchants_max}")
        )
    defaults = _section_rules("defaults", doc.defaults, limits, problems)
    sections: dict[str, Section] = {}
    total = len(defaults)
    for merchant_id, msec in doc.merchants.items():
        where = f"merchants.{merchant_id}"
        rules = _section_rules(f"{where}.rules", msec.rules, limits, problems)
        total += len(rules)
        default_ids = {r.id for r in defaults}
        for rid in msec.disable:
            if rid not in default_ids:
                problems.append(
                    Problem(where, rid, "disable", "names no rule of the defaults section")
                )
        sections[merchant_id] = Section(
            rules=tuple(rules),
            inherit_defaults=msec.inherit_defaults,
            disable=frozenset(msec.disable),
        )
    if total > limits.rules_max:
        problems.append(Problem("document", None, None, f"{total} rules over {limits.rules_max}"))
    default_section = Section(rules=tuple(defaults))
    _check_exemptions("defaults", effective_rules(default_section, None), problems)
    for merchant_id, section in sections.items():
        _check_exemptions(
            f"merchants.{merchant_id}", effective_rules(default_section, section), problems
        )
    if problems:
        raise RuleSetInvalid(problems)
    canonical = msgspec.to_builtins(
        {
            "format": FORMAT_VERSION,
            "description": doc.description,
            "defaults": list(default_section.rules),
            "merchants": {
                mid: {
                    "inherit_defaults": s.inherit_defaults,
                    "disable": sorted(s.disable),
                    "rules": list(s.rules),
                }
                for mid, s in sorted(sections.items())
            },
        }
    )
    return ValidDocument(defaults=default_section, merchants=sections, canonical=canonical)


def effective_rules(defaults: Section, merchant: Section | None) -> tuple[Rule, ...]:
    """The rules that judge one merchant: defaults (minus disabled, minus overridden) + its own."""
    if merchant is None:
        return tuple(r for r in defaults.rules if r.enabled)
    own_ids = {r.id for r in merchant.rules}
    inherited: list[Rule] = []
    if merchant.inherit_defaults:
        inherited = [
            r for r in defaults.rules if r.id not in merchant.disable and r.id not in own_ids
        ]
    return tuple(r for r in (*inherited, *merchant.rules) if r.enabled)


def _section_rules(
    where: str, raw_rules: list[Any], limits: RiskLimits, problems: list[Problem]
) -> list[Rule]:
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_rules):
        at = f"{where}[{index}]"
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        rule_id = raw_id if isinstance(raw_id, str) else None
        before = len(problems)
        rule = _convert_rule(at, rule_id, raw, problems)
        if rule is None:
            continue
        if rule.id in seen:
            problems.append(Problem(at, rule.id, "id", "duplicate rule id in this section"))
        seen.add(rule.id)
        _check_rule(at, rule, limits, problems)
        if len(problems) == before:
            rules.append(rule)
    return rules


def _convert_rule(at: str, rule_id: str | None, raw: Any, problems: list[Problem]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(Problem(at, None, None, f"a rule must be a mapping, got {raw!r:.40}"))
        return None
    kind = raw.get("type")
    if kind not in RULE_TYPES:
        problems.append(
            Problem(at, rule_id, "type", f"{kind!r} is not one of {', '.join(RULE_TYPES)}")
        )
        return None
    if kind == "time_window":
        for name in ("start", "end"):
            if isinstance(raw.get(name), int):
                problems.append(
                    Problem(
                        at,
                        rule_id,
                        name,
                        'write times as quoted "HH:MM" strings (YAML reads an unquoted 18:00 '
                        "as a number)",
                    )
                )
                return None
    try:
        return msgspec.convert(raw, type=Rule, strict=True)
    except msgspec.ValidationError as exc:
        field, message = _split_msgspec_error(exc)
        problems.append(Problem(at, rule_id, field, message))
        return None


def parse_multiple(value: int | float | str) -> tuple[int, int]:
    """``2.5`` → (5, 2): the anomaly multiple as an exact fraction (no float reaches money)."""
    try:
        d = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not d.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    num, den = d.as_integer_ratio()
    return num, den


def parse_hhmm(value: str) -> int:
    m = HHMM.match(value)
    if m is None:
        raise ValueError(f'{value!r} is not a time "HH:MM" (00:00 to 23:59)')
    return int(m.group(1)) * 60 + int(m.group(2))


def normalised_values(field: str, values: list[str]) -> frozenset[str]:
    norm = {"account": normalise_account, "bank": normalise_bank, "name": normalise_name}[field]
    return frozenset(norm(v) for v in values)


def _check_rule(at: str, rule: Rule, limits: RiskLimits, problems: list[Problem]) -> None:
    def bad(field: str | None, message: str) -> None:
        problems.append(Problem(at, rule.id, field, message))

    if isinstance(rule, BlocklistRule | AllowlistRule):
        if len(rule.values) > limits.list_values_max:
            bad("values", f"{len(rule.values)} values over the limit {limits.list_values_max}")
        for i, value in enumerate(rule.values):
            if not normalised_values(rule.field, [value]) - {""}:
                bad("values", f"entry {i} ({value!r}) is empty once normalised")
        if isinstance(rule, AllowlistRule) and rule.exempt_allowlist is not None:
            bad("exempt_allowlist", "an allowlist cannot be exempted by another allowlist")
    elif isinstance(rule, VelocityRule):
        if rule.max_count is None and rule.max_amount_minor is None:
            bad(None, "a velocity rule needs max_count, max_amount_minor or both")
        if rule.max_amount_minor is not None and rule.currency is None:
            bad("currency", "required with max_amount_minor (amounts are per currency)")
        if rule.window_s > limits.velocity_horizon_s:
            bad(
                "window_s",
                f"{rule.window_s}s is longer than the kept history ({limits.velocity_horizon_s}s)",
            )
        if rule.window_s * 1000 % limits.bucket_ms:
            bad("window_s", f"must be a multiple of the counter bucket ({limits.bucket_ms} ms)")
    elif isinstance(rule, AmountAnomalyRule):
        if isinstance(rule.multiple, bool):
            bad("multiple", "must be a number greater than 1")
        else:
            try:
                num, den = parse_multiple(rule.multiple)
            except ValueError as exc:
                bad("multiple", str(exc))
            else:
                if not (den < num <= 1000 * den):
                    bad("multiple", f"{rule.multiple} must be greater than 1 and at most 1000")
        if rule.min_samples > limits.anomaly_samples_max:
            bad(
                "min_samples",
                f"{rule.min_samples} is more than the samples kept per merchant "
                f"({limits.anomaly_samples_max})",
            )
        if rule.min_amount_minor is not None and rule.currency is None:
            bad("currency", "required with min_amount_minor (amounts are per currency)")
    elif isinstance(rule, NewBeneficiaryRule):
        if rule.cooldown_s > limits.beneficiary_memory_s:
            bad(
                "cooldown_s",
                f"{rule.cooldown_s}s is longer than beneficiaries are remembered "
                f"({limits.beneficiary_memory_s}s)",
            )
        if rule.min_amount_minor is not None and rule.currency is None:
            bad("currency", "required with min_amount_minor (amounts are per currency)")
    else:
        assert isinstance(rule, TimeWindowRule)
        try:
            if not rule.timezone or rule.timezone.startswith(("/", ".")) or ".." in rule.timezone:
                raise zoneinfo.ZoneInfoNotFoundError(rule.timezone)
            zoneinfo.ZoneInfo(rule.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            bad("timezone", f"{rule.timezone!r} is not an IANA time zone (e.g. Europe/Paris)")
        times: list[int] = []
        for name in ("start", "end"):
            try:
                times.append(parse_hhmm(getattr(rule, name)))
            except ValueError as exc:
                bad(name, str(exc))
        if len(times) == 2 and times[0] == times[1]:
            bad("end", "equals start: the window would be empty")
        if rule.days is not None and not rule.days:
            bad("days", "an empty list would never match; omit it for every day")


def _check_exemptions(where: str, rules: tuple[Rule, ...], problems: list[Problem]) -> None:
    allowlists = {r.id for r in rules if isinstance(r, AllowlistRule)}
    for rule in rules:
        ref = rule.exempt_allowlist
        if ref is not None and ref not in allowlists:
            problems.append(
                Problem(
                    where,
                    rule.id,
                    "exempt_allowlist",
                    f"{ref!r} is not an enabled allowlist rule that applies here",
                )
            )
