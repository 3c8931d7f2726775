"""In-memory counters the rules read: sliding-window velocity, recent amounts, first payouts.

Fed by ``record`` after a payout is accepted (and by replay for warm-up and dry runs); read by
the evaluator with no I/O. Every structure is bounded by ``RiskLimits``: idle keys are evicted
oldest-first, the number of keys is capped, and so is the history kept per key.

Velocity series: per key, the non-empty buckets (``bucket_ms`` wide) in time order with
*cumulative* counts and amounts, so the total over any window is two array reads after one
binary search — O(log n) whatever the window, instead of a scan of every bucket in it.
"""

from __future__ import annotations

import bisect
from array import array
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import UTC, datetime

from services.payout.risk.limits import RiskLimits
from services.payout.risk.model import PayoutFacts
from services.payout.risk.normalise import (
    normalise_account,
    normalise_bank,
    normalise_name_cached,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ALL = "*"
_COMPACT_MIN = 256


def epoch_ms(at: datetime) -> int:
    """Exact integer milliseconds (no float rounding at window edges)."""
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass(frozen=True, slots=True)
class Subject:
    """A payout's facts in the forms the counters and rules use, computed once per payout."""

    merchant_id: str
    currency: str
    amount_minor: int
    at_ms: int
    keys: tuple[str, str, str]  # normalised (account, bank, name)
    beneficiary: str  # normalised bank + account: one beneficiary across merchants

    @classmethod
    def of(cls, facts: PayoutFacts) -> Subject:
        account = normalise_account(facts.beneficiary_account)
        bank = normalise_bank(facts.beneficiary_bank)
        return cls(
            merchant_id=facts.merchant_id,
            currency=facts.currency,
            amount_minor=facts.amount_minor,
            at_ms=epoch_ms(facts.created_at),
            keys=(account, bank, normalise_name_cached(facts.beneficiary_name)),
            beneficiary=_pair(bank, account),
        )


def _pair(bank: str, account: str) -> str:
    return f"{bank}\x1f{account}"


def beneficiary_key(bank_code: str, account: str) -> str:
    """One beneficiary across merchants: normalised bank code + account number."""
    return _pair(normalise_bank(bank_code), normalise_account(account))


class Series:
    """One key's events in time order, aggregated per bucket, with cumulative sums."""

    __slots__ = ("amounts", "base_amount", "base_count", "buckets", "counts", "head")

    def __init__(self) -> None:
        self.buckets = array("q")
        self.counts = array("q")  # cumulative count up to and including each bucket
        self.amounts: list[int] = []  # cumulative amount (Python ints: sums never overflow)
        self.head = 0  # entries before head have expired
        self.base_count = 0  # cumulative values just before head
        self.base_amount = 0

    @property
    def last_bucket(self) -> int:
        return self.buckets[-1] if len(self.buckets) > self.head else -(2**62)

    def add(self, bucket: int, amount: int, oldest_bucket: int, buckets_max: int) -> None:
        if bucket < oldest_bucket:
            return  # older than any window a rule may use
        n = len(self.buckets)
        if n > self.head and bucket <= self.buckets[-1]:
            # Same bucket, or a late event: counted in the latest bucket (later, never lost).
            self.counts[-1] += 1
            self.amounts[-1] += amount
        else:
            prev_count = self.counts[-1] if n else self.base_count
            prev_amount = self.amounts[-1] if n else self.base_amount
            self.buckets.append(bucket)
            self.counts.append(prev_count + 1)
            self.amounts.append(prev_amount + amount)
        self.expire(oldest_bucket)
        if len(self.buckets) - self.head > buckets_max:
            # Fold the oldest bucket into the next one: advancing head without moving the base
            # attributes its events to the next bucket, i.e. later in time. Windows then count
            # them for longer, never shorter: a cap can make a limit stricter, never laxer.
            self.head += 1
            self._compact()

    def expire(self, oldest_bucket: int) -> None:
        buckets, head, n = self.buckets, self.head, len(self.buckets)
        if head < n and buckets[head] < oldest_bucket:
            cut = bisect.bisect_left(buckets, oldest_bucket, head, n)
            self.base_count = self.counts[cut - 1]
            self.base_amount = self.amounts[cut - 1]
            self.head = cut
            self._compact()

    def _compact(self) -> None:
        head = self.head
        if head >= _COMPACT_MIN and head * 2 >= len(self.buckets):
            del self.buckets[:head]
            del self.counts[:head]
            del self.amounts[:head]
            self.head = 0

    def totals(self) -> tuple[int, int]:
        """(count, amount) of everything kept (every bucket since the horizon)."""
        if self.head == len(self.buckets):
            return 0, 0
        return self.counts[-1] - self.base_count, self.amounts[-1] - self.base_amount

    def since(self, first_bucket: int) -> tuple[int, int]:
        """(count, amount) of events in buckets ≥ first_bucket."""
        buckets, head, n = self.buckets, self.head, len(self.buckets)
        if head == n:
            return 0, 0
        i = bisect.bisect_left(buckets, first_bucket, head, n)
        if i == n:
            return 0, 0
        if i > head:
            return self.counts[-1] - self.counts[i - 1], self.amounts[-1] - self.amounts[i - 1]
        return self.counts[-1] - self.base_count, self.amounts[-1] - self.base_amount

    def __len__(self) -> int:
        return len(self.buckets) - self.head


class Samples:
    """The last N amounts of one merchant and currency, kept sorted for an O(1) median."""

    __slots__ = ("last_ms", "order", "sorted")

    def __init__(self, size_max: int) -> None:
        self.order: deque[int] = deque(maxlen=size_max)
        self.sorted: list[int] = []
        self.last_ms = 0

    def add(self, amount: int, at_ms: int) -> None:
        if len(self.order) == self.order.maxlen:
            oldest = self.order[0]
            del self.sorted[bisect.bisect_left(self.sorted, oldest)]
        self.order.append(amount)
        bisect.insort(self.sorted, amount)
        self.last_ms = max(self.last_ms, at_ms)

    def median_twice(self) -> tuple[int, int]:
        """(sample count, 2 x median): twice the median stays an exact integer."""
        s = self.sorted
        n = len(s)
        if n == 0:
            return 0, 0
        return n, s[(n - 1) // 2] + s[n // 2]


class Counters:
    """All the state the rules read. Not thread-safe by itself: the Engine serialises access."""

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self.bucket_ms = limits.bucket_ms
        self._horizon_buckets = limits.velocity_horizon_s * 1000 // limits.bucket_ms
        # scope → key → series; keys are (owner, currency-or-"*") tuples.
        self.velocity: dict[str, OrderedDict[tuple[str, ...], Series]] = {
            "merchant": OrderedDict(),
            "beneficiary": OrderedDict(),
            "merchant_beneficiary": OrderedDict(),
        }
        self.samples: OrderedDict[tuple[str, str], Samples] = OrderedDict()
        # (merchant, beneficiary) → [first payout ms, last payout ms]
        self.first_seen: OrderedDict[tuple[str, str], list[int]] = OrderedDict()
        self.latest_ms = -(2**62)
        self.recorded = 0
        self.evicted_live_keys = 0  # keys dropped by a cap while still inside the horizon

    # --- reads (the evaluator) ---------------------------------------------------------
    def series(self, scope: str, subject: Subject, currency: str) -> Series | None:
        return self.velocity[scope].get(_velocity_key(scope, subject, currency))

    def velocity_since(
        self, scope: str, subject: Subject, currency: str, window_buckets: int
    ) -> tuple[int, int]:
        """(count, amount) recorded in the window of ``window_buckets`` buckets ending with the
        payout's own bucket: a payout at t counts while bucket(t) > bucket(now) - window."""
        series = self.series(scope, subject, currency)
        if series is None:
            return 0, 0
        return series.since(subject.at_ms // self.bucket_ms - window_buckets + 1)

    def median_twice(self, merchant_id: str, currency: str) -> tuple[int, int]:
        samples = self.samples.get((merchant_id, currency))
        return (0, 0) if samples is None else samples.median_twice()

    def first_seen_ms(self, merchant_id: str, beneficiary: str) -> int | None:
        seen = self.first_seen.get((merchant_id, beneficiary))
        return None if seen is None else seen[0]

    # --- writes --------------------------------------------------------------------------
    def record(self, subject: Subject) -> None:
        limits = self.limits
        at_ms = subject.at_ms
        bucket = at_ms // self.bucket_ms
        oldest = bucket - self._horizon_buckets + 1
        self.latest_ms = max(self.latest_ms, at_ms)
        for scope, family in self.velocity.items():
            for currency in (subject.currency, ALL):
                key = _velocity_key(scope, subject, currency)
                series = family.get(key)
                if series is None:
                    self._sweep(family, oldest, limits.velocity_keys_max - 1)
                    series = family[key] = Series()
                else:
                    family.move_to_end(key)
                series.add(
                    bucket, subject.amount_minor, oldest, limits.velocity_buckets_per_key_max
                )

        skey = (subject.merchant_id, subject.currency)
        samples = self.samples.get(skey)
        if samples is None:
            self._sweep_samples(at_ms)
            samples = self.samples[skey] = Samples(limits.anomaly_samples_max)
        else:
            self.samples.move_to_end(skey)
        samples.add(subject.amount_minor, at_ms)

        bkey = (subject.merchant_id, subject.beneficiary)
        seen = self.first_seen.get(bkey)
        if seen is None:
            self._sweep_beneficiaries(at_ms)
            self.first_seen[bkey] = [at_ms, at_ms]
        else:
            seen[0] = min(seen[0], at_ms)
            seen[1] = max(seen[1], at_ms)
            self.first_seen.move_to_end(bkey)
        self.recorded += 1

    def remember_beneficiary(
        self, merchant_id: str, beneficiary: str, first_ms: int, last_ms: int
    ) -> None:
        """Seed first/last payout times of a pair, e.g. from history older than the warm-up."""
        assert first_ms <= last_ms
        bkey = (merchant_id, beneficiary)
        seen = self.first_seen.get(bkey)
        if seen is None:
            self._sweep_beneficiaries(last_ms)
            self.first_seen[bkey] = [first_ms, last_ms]
        else:
            seen[0] = min(seen[0], first_ms)
            seen[1] = max(seen[1], last_ms)

    def _sweep(self, family: OrderedDict[tuple[str, ...], Series], oldest: int, cap: int) -> None:
        # Runs before a new key goes in: drops idle keys and makes room under the cap, least
        # recently recorded first; a bounded number of steps per record keeps it O(1).
        for _ in range(8):
            if not family:
                return
            key, series = next(iter(family.items()))
            if series.last_bucket < oldest:
                del family[key]
            elif len(family) > cap:
                del family[key]
                self.evicted_live_keys += 1
            else:
                return

    def _sweep_samples(self, now_ms: int) -> None:
        idle_before = now_ms - self.limits.velocity_horizon_s * 1000
        for _ in range(8):
            if not self.samples:
                return
            key, samples = next(iter(self.samples.items()))
            if samples.last_ms < idle_before or len(self.samples) >= self.limits.anomaly_keys_max:
                del self.samples[key]
            else:
                return

    def _sweep_beneficiaries(self, now_ms: int) -> None:
        idle_before = now_ms - self.limits.beneficiary_memory_s * 1000
        cap = self.limits.beneficiary_keys_max
        for _ in range(8):
            if not self.first_seen:
                return
            key, seen = next(iter(self.first_seen.items()))
            if seen[1] < idle_before or len(self.first_seen) >= cap:
                del self.first_seen[key]
            else:
                return

    def stats(self) -> dict[str, int]:
        return {
            "recorded": self.recorded,
            "velocity_keys": sum(len(f) for f in self.velocity.values()),
            "velocity_buckets": sum(len(s) for f in self.velocity.values() for s in f.values()),
            "anomaly_keys": len(self.samples),
            "beneficiary_keys": len(self.first_seen),
            "evicted_live_keys": self.evicted_live_keys,
        }


def _velocity_key(scope: str, subject: Subject, currency: str) -> tuple[str, ...]:
    if scope == "merchant":
        return (subject.merchant_id, currency)
    if scope == "beneficiary":
        return (subject.beneficiary, currency)
    assert scope == "merchant_beneficiary", scope
    return (subject.merchant_id, subject.beneficiary, currency)
