"""The banks' configuration: parsed from a plain mapping (the YAML file) and validated.

Every problem raises ``ConfigError`` naming the bank and the key, so a bad file is refused at
start-up with a message an operator can act on. Rates are probabilities (0..1); money is
integer minor units; times of day are ``HH:MM`` in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from typing import Any

from services.banksim.domain.money import EXPONENTS

STATEMENT_FORMATS = ("csv", "mt940", "camt053")
FAILURE_MIX_CODES = (
    "invalid_account",
    "account_closed",
    "name_mismatch",
    "rejected",
    "insufficient_liquidity",
)
ASYNC_FAILURE_CODES = ("account_closed", "rejected", "insufficient_liquidity")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


class ConfigError(ValueError):
    """The banks' configuration is invalid; the message names the bank and the key."""


@dataclass(frozen=True)
class Window:
    """A daily time window [start, end) in UTC; ``end`` 24:00 means midnight."""

    start_minute: int
    end_minute: int

    def contains(self, at: time) -> bool:
        minute = at.hour * 60 + at.minute
        if self.start_minute <= self.end_minute:
            return self.start_minute <= minute < self.end_minute
        return minute >= self.start_minute or minute < self.end_minute  # wraps midnight

    def __str__(self) -> str:
        return f"{_fmt(self.start_minute)}-{_fmt(self.end_minute)}"


def _fmt(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True)
class Account:
    currency: str
    iban: str
    opening_balance_minor: int


@dataclass(frozen=True)
class BankConfig:
    name: str
    display_name: str
    bic: str
    statement_format: str
    accounts: dict[str, Account]
    fee_fixed_minor: int
    fee_rate_bp: int  # basis points of the amount, on top of the fixed part
    fee_max_minor: int | None
    latency_median_ms: int
    latency_p99_ms: int
    latency_max_ms: int
    success_rate: float
    failure_mix: dict[str, float]  # code -> weight, among the failures
    lost_response_rate: float
    lost_response_mode: str  # drop | delay | mixed
    lost_response_delay_ms: int
    ambiguous_error_rate: float  # 5xx after acceptance
    async_rate: float
    async_success_rate: float
    async_failure_codes: tuple[str, ...]
    async_delay_min_ms: int
    async_delay_max_ms: int
    daily_limit_minor: int  # per currency and business day
    cutoff_minute: int | None
    after_cutoff: str  # reject | next_day
    maintenance_windows: tuple[Window, ...]
    statement_epoch: date  # statement number 1 is this date
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cutoff(self) -> str | None:
        return None if self.cutoff_minute is None else _fmt(self.cutoff_minute)


def parse_config(raw: Any) -> dict[str, BankConfig]:
    """Validate the whole file; returns banks by name (insertion order kept)."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("banks"), Mapping):
        raise ConfigError("the configuration must be a mapping with a 'banks' mapping")
    banks_raw = raw["banks"]
    if not banks_raw:
        raise ConfigError("'banks' is empty: configure at least one bank")
    banks: dict[str, BankConfig] = {}
    for name, body in banks_raw.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"bank name {name!r} must match {_NAME.pattern}")
        if not isinstance(body, Mapping):
            raise ConfigError(f"bank {name}: must be a mapping")
        banks[name] = _parse_bank(name, _Reader(name, body))
    return banks


class _Reader:
    def __init__(self, bank: str, body: Mapping[str, Any]) -> None:
        self.bank = bank
        self.body = body
        self.used: set[str] = set()

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"bank {self.bank}: {key}: {problem}")

    def get(self, key: str, default: Any = ...) -> Any:
        self.used.add(key.split(".")[0])
        node: Any = self.body
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is ...:
                    raise self.fail(key, "is required")
                return default
            node = node[part]
        return node

    def integer(self, key: str, default: Any = ..., *, lo: int = 0, hi: int = 10**15) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {lo} and {hi}, got {value}")
        return value

    def rate(self, key: str, default: Any = ...) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"must be a number between 0 and 1, got {value!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise self.fail(key, f"must be between 0 and 1, got {value}")
        return float(value)

    def string(self, key: str, default: Any = ..., *, choices: tuple[str, ...] = ()) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"must be a non-empty string, got {value!r}")
        if choices and value not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def minute(self, key: str, value: Any) -> int:
        if not isinstance(value, str) or not _HHMM.match(value):
            raise self.fail(key, f"must be a time HH:MM (UTC), got {value!r}")
        hours, minutes = value.split(":")
        return int(hours) * 60 + int(minutes)


_KNOWN_KEYS = frozenset(
    {
        "display_name",
        "bic",
        "statement_format",
        "accounts",
        "fee",
        "latency_ms",
        "success_rate",
        "failure_mix",
        "lost_responses",
        "ambiguous_error_rate",
        "async_completion",
        "daily_limit_minor",
        "cutoff",
        "after_cutoff",
        "maintenance_windows",
        "statement_epoch",
    }
)


def _parse_bank(name: str, r: _Reader) -> BankConfig:
    unknown = set(r.body) - _KNOWN_KEYS
    if unknown:
        raise r.fail(sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(_KNOWN_KEYS))})")

    accounts_raw = r.get("accounts")
    if not isinstance(accounts_raw, Mapping) or not accounts_raw:
        raise r.fail("accounts", "must map currency codes to {iban, opening_balance_minor}")
    accounts: dict[str, Account] = {}
    for currency, acc in accounts_raw.items():
        key = f"accounts.{currency}"
        if currency not in EXPONENTS:
            raise r.fail(key, f"unsupported currency (known: {', '.join(sorted(EXPONENTS))})")
        if not isinstance(acc, Mapping):
            raise r.fail(key, "must be a mapping with iban and opening_balance_minor")
        iban = acc.get("iban")
        if not isinstance(iban, str) or not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{1,30}", iban):
            raise r.fail(f"{key}.iban", f"must look like an IBAN, got {iban!r}")
        opening = acc.get("opening_balance_minor", 0)
        if isinstance(opening, bool) or not isinstance(opening, int):
            raise r.fail(f"{key}.opening_balance_minor", "must be an integer")
        accounts[currency] = Account(currency, iban, opening)

    median = r.integer("latency_ms.median", lo=0, hi=60_000)
    p99 = r.integer("latency_ms.p99", lo=0, hi=600_000)
    latency_max = r.integer("latency_ms.max", max(p99 * 3, 1), lo=0, hi=600_000)
    if p99 < median:
        raise r.fail("latency_ms.p99", f"must be >= median ({median}), got {p99}")
    if latency_max < p99:
        raise r.fail("latency_ms.max", f"must be >= p99 ({p99}), got {latency_max}")

    mix_raw = r.get("failure_mix", {"rejected": 1.0})
    if not isinstance(mix_raw, Mapping) or not mix_raw:
        raise r.fail("failure_mix", "must map failure codes to weights")
    mix: dict[str, float] = {}
    for code, weight in mix_raw.items():
        if code not in FAILURE_MIX_CODES:
            raise r.fail(
                f"failure_mix.{code}", f"unknown code (known: {', '.join(FAILURE_MIX_CODES)})"
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise r.fail(f"failure_mix.{code}", f"weight must be a number >= 0, got {weight!r}")
        mix[code] = float(weight)
    if sum(mix.values()) <= 0:
        raise r.fail("failure_mix", "weights must not all be zero")

    async_codes_raw = r.get("async_completion.failure_codes", ["rejected"])
    if not isinstance(async_codes_raw, list) or not async_codes_raw:
        raise r.fail("async_completion.failure_codes", "must be a non-empty list")
    for code in async_codes_raw:
        if code not in ASYNC_FAILURE_CODES:
            raise r.fail(
                "async_completion.failure_codes",
                f"unknown code {code!r} (known: {', '.join(ASYNC_FAILURE_CODES)})",
            )
    delay_min = r.integer("async_completion.delay_min_ms", 500, lo=0, hi=3_600_000)
    delay_max = r.integer("async_completion.delay_max_ms", 2000, lo=0, hi=3_600_000)
    if delay_max < delay_min:
        raise r.fail("async_completion.delay_max_ms", f"must be >= delay_min_ms ({delay_min})")

    cutoff_raw = r.get("cutoff", None)
    cutoff = None if cutoff_raw is None else r.minute("cutoff", cutoff_raw)
    windows_raw = r.get("maintenance_windows", [])
    if not isinstance(windows_raw, list):
        raise r.fail("maintenance_windows", "must be a list of 'HH:MM-HH:MM' strings")
    windows = []
    for item in windows_raw:
        if not isinstance(item, str) or item.count("-") != 1:
            raise r.fail("maintenance_windows", f"'HH:MM-HH:MM' expected, got {item!r}")
        start, end = item.split("-")
        window = Window(
            r.minute("maintenance_windows", start.strip()),
            r.minute("maintenance_windows", end.strip()),
        )
        if window.start_minute == window.end_minute:
            raise r.fail("maintenance_windows", f"empty window {item!r}")
        windows.append(window)

    epoch_raw = r.get("statement_epoch", "2024-01-01")
    try:
        epoch = date.fromisoformat(str(epoch_raw))
    except ValueError:
        raise r.fail("statement_epoch", f"must be a date YYYY-MM-DD, got {epoch_raw!r}") from None

    fee_max_raw = r.get("fee.max_minor", None)
    fee_max = None if fee_max_raw is None else r.integer("fee.max_minor", lo=0)
    bic = r.string("bic")
    if not re.fullmatch(r"[A-Z]{6}[A-Z0-9]{2}([A-Z0-9]{3})?", bic):
        raise r.fail("bic", f"must be a BIC (8 or 11 characters), got {bic!r}")
    return BankConfig(
        name=name,
        display_name=r.string("display_name", name),
        bic=bic,
        statement_format=r.string("statement_format", choices=STATEMENT_FORMATS),
        accounts=accounts,
        fee_fixed_minor=r.integer("fee.fixed_minor", 0),
        fee_rate_bp=r.integer("fee.rate_bp", 0, hi=10_000),
        fee_max_minor=fee_max,
        latency_median_ms=median,
        latency_p99_ms=p99,
        latency_max_ms=latency_max,
        success_rate=r.rate("success_rate"),
        failure_mix=mix,
        lost_response_rate=r.rate("lost_responses.rate", 0.0),
        lost_response_mode=r.string(
            "lost_responses.mode", "mixed", choices=("drop", "delay", "mixed")
        ),
        lost_response_delay_ms=r.integer("lost_responses.delay_ms", 30_000, hi=600_000),
        ambiguous_error_rate=r.rate("ambiguous_error_rate", 0.0),
        async_rate=r.rate("async_completion.rate", 0.0),
        async_success_rate=r.rate("async_completion.success_rate", 0.95),
        async_failure_codes=tuple(async_codes_raw),
        async_delay_min_ms=delay_min,
        async_delay_max_ms=delay_max,
        daily_limit_minor=r.integer("daily_limit_minor", lo=1),
        cutoff_minute=cutoff,
        after_cutoff=r.string("after_cutoff", "next_day", choices=("reject", "next_day")),
        maintenance_windows=tuple(windows),
        statement_epoch=epoch,
    )
