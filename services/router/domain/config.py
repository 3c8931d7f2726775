"""Channels and merchant rules as the operator writes them, validated before they go live.

A config is parsed whole or rejected whole (``ConfigError``): the caller keeps the last good
config live, so a typo in a file never takes routing down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import msgspec

CHANNELS_MAX = 1_000
RULES_MAX = 10_000
_ID = re.compile(r"^[a-z0-9_.\-]{1,64}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

Action = Literal["prefer", "exclude", "pin"]


class ConfigError(ValueError):
    """The file is not a valid config; nothing of it goes live."""


class _Window(msgspec.Struct, forbid_unknown_fields=True):
    start_utc: str
    end_utc: str


class _ChannelSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    bank: str
    currency: str
    amount_min_minor: int = 1
    amount_max_minor: int = 1_000_000_000_000
    beneficiary_banks: list[str] = msgspec.field(default_factory=lambda: ["*"])
    fee_minor: int = 0
    fee_bps: int = 0
    daily_quota_minor: int = 1_000_000_000_000_000
    cutoff_utc: str | None = None
    maintenance_utc: list[_Window] = msgspec.field(default_factory=list)
    enabled: bool = True


class _ChannelsFile(msgspec.Struct, forbid_unknown_fields=True):
    channels: list[_ChannelSpec]
    version: int = 1


class _RuleSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    merchant_id: str
    action: Action
    channels: list[str]
    currency: str | None = None
    amount_min_minor: int | None = None
    amount_max_minor: int | None = None
    beneficiary_banks: list[str] | None = None


class _RulesFile(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[_RuleSpec] = msgspec.field(default_factory=list)
    version: int = 1


def _minutes(value: str, where: str) -> int:
    match = _HHMM.match(value)
    if not match:
        raise ConfigError(f"{where}: {value!r} is not HH:MM (UTC)")
    return int(match.group(1)) * 60 + int(match.group(2))


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A daily UTC window; ``end`` before ``start`` wraps past midnight."""

    start_min: int
    end_min: int

    def contains(self, minute_of_day: int) -> bool:
        if self.start_min <= self.end_min:
            return self.start_min <= minute_of_day < self.end_min
        return minute_of_day >= self.start_min or minute_of_day < self.end_min


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    bank: str
    currency: str
    amount_min_minor: int
    amount_max_minor: int
    beneficiary_banks: frozenset[str] | None  # None: every bank
    fee_minor: int
    fee_bps: int
    daily_quota_minor: int
    cutoff_min: int | None  # minute of the UTC day after which the channel takes nothing new
    maintenance: tuple[MaintenanceWindow, ...]
    enabled: bool

    def fee_for(self, amount_minor: int) -> int:
        return self.fee_minor + amount_minor * self.fee_bps // 10_000

    def supports_bank(self, bank_code: str) -> bool:
        return self.beneficiary_banks is None or bank_code in self.beneficiary_banks

    def in_maintenance(self, now: datetime) -> bool:
        minute = now.hour * 60 + now.minute
        return any(w.contains(minute) for w in self.maintenance)

    def past_cutoff(self, now: datetime) -> bool:
        return self.cutoff_min is not None and now.hour * 60 + now.minute >= self.cutoff_min

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bank": self.bank,
            "currency": self.currency,
            "amount_min_minor": self.amount_min_minor,
            "amount_max_minor": self.amount_max_minor,
            "beneficiary_banks": sorted(self.beneficiary_banks)
            if self.beneficiary_banks
            else ["*"],
            "fee_minor": self.fee_minor,
            "fee_bps": self.fee_bps,
            "daily_quota_minor": self.daily_quota_minor,
            "cutoff_utc": None
            if self.cutoff_min is None
            else f"{self.cutoff_min // 60:02d}:{self.cutoff_min % 60:02d}",
            "maintenance_utc": [
                {
                    "start_utc": f"{w.start_min // 60:02d}:{w.start_min % 60:02d}",
                    "end_utc": f"{w.end_min // 60:02d}:{w.end_min % 60:02d}",
                }
                for w in self.maintenance
            ],
            "enabled": self.enabled,
        }


@dataclass(frozen=True, slots=True)
class MerchantRule:
    id: str
    merchant_id: str  # "*" applies to every merchant
    action: Action
    channels: frozenset[str]
    currency: str | None
    amount_min_minor: int | None
    amount_max_minor: int | None
    beneficiary_banks: frozenset[str] | None

    def matches(self, amount_minor: int, currency: str, bank_code: str) -> bool:
        if self.currency is not None and currency != self.currency:
            return False
        if self.amount_min_minor is not None and amount_minor < self.amount_min_minor:
            return False
        if self.amount_max_minor is not None and amount_minor > self.amount_max_minor:
            return False
        return self.beneficiary_banks is None or bank_code in self.beneficiary_banks


@dataclass(frozen=True, slots=True)
class RuleBook:
    """Rules indexed by merchant so a decision looks at its merchant's rules only."""

    by_merchant: dict[str, tuple[MerchantRule, ...]]
    wildcard: tuple[MerchantRule, ...]
    count: int

    def for_merchant(self, merchant_id: str) -> tuple[MerchantRule, ...]:
        own = self.by_merchant.get(merchant_id, ())
        return own + self.wildcard if self.wildcard else own


EMPTY_RULES = RuleBook(by_merchant={}, wildcard=(), count=0)


def _check_currency(value: str, where: str) -> None:
    if not re.fullmatch(r"[A-Z]{3}", value):
        raise ConfigError(f"{where}: currency {value!r} is not an ISO 4217 code")


def _decode(raw: Any, model: type[Any], what: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: the top level must be a mapping")
    try:
        return msgspec.convert(raw, type=model, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def parse_channels(raw: Any) -> tuple[Channel, ...]:
    spec: _ChannelsFile = _decode(raw, _ChannelsFile, "channels")
    if not spec.channels:
        raise ConfigError("channels: at least one channel is required")
    if len(spec.channels) > CHANNELS_MAX:
        raise ConfigError(f"channels: more than {CHANNELS_MAX} channels")
    seen: set[str] = set()
    out: list[Channel] = []
    for i, c in enumerate(spec.channels):
        where = f"channels[{i}] ({c.id})"
        if not _ID.match(c.id):
            raise ConfigError(f"{where}: id must match {_ID.pattern}")
        if c.id in seen:
            raise ConfigError(f"{where}: duplicate channel id")
        seen.add(c.id)
        if not _ID.match(c.bank):
            raise ConfigError(f"{where}: bank must match {_ID.pattern}")
        _check_currency(c.currency, where)
        if not 1 <= c.amount_min_minor <= c.amount_max_minor:
            raise ConfigError(f"{where}: need 1 <= amount_min_minor <= amount_max_minor")
        if c.fee_minor < 0 or not 0 <= c.fee_bps <= 10_000:
            raise ConfigError(f"{where}: fee_minor must be >= 0 and fee_bps in 0..10000")
        if c.daily_quota_minor < 1:
            raise ConfigError(f"{where}: daily_quota_minor must be >= 1")
        if not c.beneficiary_banks:
            raise ConfigError(f"{where}: beneficiary_banks must not be empty (use ['*'])")
        out.append(
            Channel(
                id=c.id,
                bank=c.bank,
                currency=c.currency,
                amount_min_minor=c.amount_min_minor,
                amount_max_minor=c.amount_max_minor,
                beneficiary_banks=None
                if "*" in c.beneficiary_banks
                else frozenset(c.beneficiary_banks),
                fee_minor=c.fee_minor,
                fee_bps=c.fee_bps,
                daily_quota_minor=c.daily_quota_minor,
                cutoff_min=None if c.cutoff_utc is None else _minutes(c.cutoff_utc, where),
                maintenance=tuple(
                    MaintenanceWindow(_minutes(w.start_utc, where), _minutes(w.end_utc, where))
                    for w in c.maintenance_utc
                ),
                enabled=c.enabled,
            )
        )
    return tuple(out)


def parse_rules(raw: Any) -> RuleBook:
    if raw is None:  # an empty file means "no rules"
        return EMPTY_RULES
    spec: _RulesFile = _decode(raw, _RulesFile, "merchant rules")
    if len(spec.rules) > RULES_MAX:
        raise ConfigError(f"merchant rules: more than {RULES_MAX} rules")
    seen: set[str] = set()
    by_merchant: dict[str, list[MerchantRule]] = {}
    wildcard: list[MerchantRule] = []
    for i, r in enumerate(spec.rules):
        where = f"rules[{i}] ({r.id})"
        if not _ID.match(r.id):
            raise ConfigError(f"{where}: id must match {_ID.pattern}")
        if r.id in seen:
            raise ConfigError(f"{where}: duplicate rule id")
        seen.add(r.id)
        if not r.channels:
            raise ConfigError(f"{where}: channels must not be empty")
        if r.currency is not None:
            _check_currency(r.currency, where)
        if (
            r.amount_min_minor is not None
            and r.amount_max_minor is not None
            and r.amount_min_minor > r.amount_max_minor
        ):
            raise ConfigError(f"{where}: amount_min_minor > amount_max_minor")
        rule = MerchantRule(
            id=r.id,
            merchant_id=r.merchant_id,
            action=r.action,
            channels=frozenset(r.channels),
            currency=r.currency,
            amount_min_minor=r.amount_min_minor,
            amount_max_minor=r.amount_max_minor,
            beneficiary_banks=None
            if r.beneficiary_banks is None
            else frozenset(r.beneficiary_banks),
        )
        if r.merchant_id == "*":
            wildcard.append(rule)
        else:
            by_merchant.setdefault(r.merchant_id, []).append(rule)
    return RuleBook(
        by_merchant={k: tuple(v) for k, v in by_merchant.items()},
        wildcard=tuple(wildcard),
        count=len(seen),
    )
