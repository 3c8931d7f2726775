"""Channel health: a sliding window of outcomes and a circuit breaker per channel.

Times are monotonic seconds passed in by the caller, so tests drive every transition with a
fake clock. Only channel faults count against a channel: a beneficiary error says nothing about
the channel, so it is recorded (counts per class, latency) but never enters the success rate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

PPM = 1_000_000


class OutcomeClass(StrEnum):
    SUCCEEDED = "succeeded"
    SUBMITTED = "submitted"
    DEFINITE_NON_EXECUTION = "definite_non_execution"
    BENEFICIARY_ERROR = "beneficiary_error"
    UNKNOWN_OUTCOME = "unknown_outcome"


_FAULTS = frozenset({OutcomeClass.DEFINITE_NON_EXECUTION, OutcomeClass.UNKNOWN_OUTCOME})
_HEALTHY = frozenset({OutcomeClass.SUCCEEDED, OutcomeClass.SUBMITTED})


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class LiveView(NamedTuple):
    """What the decision needs to know about a channel right now (a tuple: one is built per
    channel per decision, and a frozen dataclass costs several times more to build)."""

    success_rate_ppm: int
    latency_ms: float  # EWMA; 0 when unknown
    breaker_allows: bool


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    window_size_max: int = 100  # samples kept, by count
    window_age_max_s: float = 60.0  # samples kept, by time
    ewma_alpha: float = 0.2
    prior_success_ppm: int = 990_000  # a channel with no evidence is presumed good, not perfect
    failure_rate_open_ppm: int = 500_000  # open when faults / counted >= this ...
    min_samples_to_judge: int = 10  # ... over at least this many counted samples
    consecutive_faults_open: int = 5  # or after this many faults in a row (fast trip)
    open_duration_s: float = 5.0  # open → half-open after this long
    half_open_probes_max: int = 2  # concurrent probes allowed while half-open
    half_open_successes_to_close: int = 2
    probe_lease_s: float = 30.0  # a probe never released is reclaimed after this long
    idle_probe_after_s: float = 30.0  # a channel with no sample for this long gets probed

    def __post_init__(self) -> None:
        assert self.window_size_max >= 1 and self.window_age_max_s > 0
        assert 0 < self.ewma_alpha <= 1
        assert 0 <= self.prior_success_ppm <= PPM
        assert 0 < self.failure_rate_open_ppm <= PPM
        assert self.half_open_probes_max >= 1 and self.half_open_successes_to_close >= 1
        assert self.half_open_successes_to_close <= self.half_open_probes_max * 1000


@dataclass(slots=True)
class _Sample:
    at_s: float
    outcome: OutcomeClass
    latency_ms: float


class HealthWindow:
    """Sliding window bounded by count and by age; running counts keep reads O(1)."""

    __slots__ = ("_faults", "_healthy", "_samples", "by_class", "latency_ewma_ms", "policy")

    def __init__(self, policy: HealthPolicy) -> None:
        self.policy = policy
        self._samples: deque[_Sample] = deque()
        self._healthy = 0
        self._faults = 0
        self.by_class: dict[str, int] = {c.value: 0 for c in OutcomeClass}
        self.latency_ewma_ms: float | None = None

    def _evict(self, now_s: float) -> None:
        horizon = now_s - self.policy.window_age_max_s
        samples = self._samples
        while samples and (len(samples) > self.policy.window_size_max or samples[0].at_s < horizon):
            old = samples.popleft()
            self.by_class[old.outcome.value] -= 1
            if old.outcome in _HEALTHY:
                self._healthy -= 1
            elif old.outcome in _FAULTS:
                self._faults -= 1

    def record(self, now_s: float, outcome: OutcomeClass, latency_ms: float) -> None:
        self._samples.append(_Sample(now_s, outcome, latency_ms))
        self.by_class[outcome.value] += 1
        if outcome in _HEALTHY:
            self._healthy += 1
        elif outcome in _FAULTS:
            self._faults += 1
        alpha = self.policy.ewma_alpha
        self.latency_ewma_ms = (
            latency_ms
            if self.latency_ewma_ms is None
            else alpha * latency_ms + (1 - alpha) * self.latency_ewma_ms
        )
        self._evict(now_s)

    def counted(self, now_s: float) -> int:
        self._evict(now_s)
        return self._healthy + self._faults

    def faults(self, now_s: float) -> int:
        self._evict(now_s)
        return self._faults

    def success_rate_ppm(self, now_s: float) -> int:
        self._evict(now_s)
        counted = self._healthy + self._faults
        if counted == 0:
            return self.policy.prior_success_ppm
        return self._healthy * PPM // counted

    def latency_p95_ms(self, now_s: float) -> float | None:
        self._evict(now_s)
        if not self._samples:
            return None
        ordered = sorted(s.latency_ms for s in self._samples)
        return ordered[min(len(ordered) - 1, (95 * len(ordered) + 99) // 100 - 1)]

    def last_sample_at(self) -> float | None:
        return self._samples[-1].at_s if self._samples else None

    def counts(self, now_s: float) -> dict[str, int]:
        self._evict(now_s)
        return dict(self.by_class)

    def reset(self) -> None:
        self._samples.clear()
        self._healthy = self._faults = 0
        for key in self.by_class:
            self.by_class[key] = 0


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one request through a breaker; always released (try/finally)."""

    channel_id: str
    probe: bool
    token: int
    acquired_at_s: float


@dataclass(frozen=True, slots=True)
class Transition:
    channel_id: str
    old: BreakerState
    new: BreakerState
    at_s: float
    reason: str


@dataclass(slots=True)
class Breaker:
    channel_id: str
    policy: HealthPolicy
    state: BreakerState = BreakerState.CLOSED
    opened_at_s: float = 0.0
    consecutive_faults: int = 0
    probe_successes: int = 0
    _probes: dict[int, float] = field(default_factory=dict)  # token -> lease deadline
    _next_token: int = 0

    def _to(self, new: BreakerState, now_s: float, reason: str) -> Transition:
        old = self.state
        self.state = new
        if new is BreakerState.OPEN:
            self.opened_at_s = now_s
        if new is not BreakerState.HALF_OPEN:
            self._probes.clear()
        self.probe_successes = 0
        self.consecutive_faults = 0
        return Transition(self.channel_id, old, new, now_s, reason)

    def poll(self, now_s: float) -> Transition | None:
        """Apply the passage of time: open → half-open, and reclaim expired probe leases."""
        if (
            self.state is BreakerState.OPEN
            and now_s >= self.opened_at_s + self.policy.open_duration_s
        ):
            return self._to(BreakerState.HALF_OPEN, now_s, "open_duration_elapsed")
        if self.state is BreakerState.HALF_OPEN and self._probes:
            for token in [t for t, deadline in self._probes.items() if deadline <= now_s]:
                del self._probes[token]  # a lost probe must never wedge the breaker
        return None

    def allows(self, now_s: float) -> bool:
        """Whether a request could get a permit now (used by the eligibility filter)."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return now_s >= self.opened_at_s + self.policy.open_duration_s
        return len(self._probes) < self.policy.half_open_probes_max

    def acquire(self, now_s: float) -> tuple[Permit | None, Transition | None]:
        transition = self.poll(now_s)
        self._next_token += 1
        token = self._next_token
        if self.state is BreakerState.CLOSED:
            return Permit(self.channel_id, False, token, now_s), transition
        if self.state is BreakerState.OPEN:
            return None, transition
        if len(self._probes) >= self.policy.half_open_probes_max:
            return None, transition
        self._probes[token] = now_s + self.policy.probe_lease_s
        return Permit(self.channel_id, True, token, now_s), transition

    def release(
        self, permit: Permit, now_s: float, outcome: OutcomeClass | None, window: HealthWindow
    ) -> Transition | None:
        """Give the permit back with what happened (``None``: nothing learnt about the
        channel). Must be called exactly once per permit, from a ``finally``."""
        if permit.probe:
            held = self._probes.pop(permit.token, None) is not None
            if self.state is not BreakerState.HALF_OPEN or not held:
                return None  # stale probe from an earlier half-open period: ignore it
            if outcome in _FAULTS:
                return self._to(BreakerState.OPEN, now_s, f"probe_failed:{outcome}")
            if outcome in _HEALTHY:
                self.probe_successes += 1
                if self.probe_successes >= self.policy.half_open_successes_to_close:
                    window.reset()  # the old failures describe the outage, not the channel now
                    return self._to(BreakerState.CLOSED, now_s, "probes_succeeded")
            return None
        if self.state is not BreakerState.CLOSED or outcome is None:
            return None
        return self.judge(now_s, outcome, window)

    def judge(self, now_s: float, outcome: OutcomeClass, window: HealthWindow) -> Transition | None:
        """Closed breaker: trip on a run of faults or on the window's failure rate."""
        if self.state is not BreakerState.CLOSED:
            return None
        if outcome in _FAULTS:
            self.consecutive_faults += 1
        elif outcome in _HEALTHY:
            self.consecutive_faults = 0
        if self.consecutive_faults >= self.policy.consecutive_faults_open:
            return self._to(BreakerState.OPEN, now_s, "consecutive_faults")
        counted = window.counted(now_s)
        if counted >= self.policy.min_samples_to_judge:
            if window.faults(now_s) * PPM >= self.policy.failure_rate_open_ppm * counted:
                return self._to(BreakerState.OPEN, now_s, "failure_rate")
        return None

    def force(self, new: BreakerState, now_s: float, reason: str) -> Transition | None:
        """Adopt a state another router instance observed (convergence); never re-announced."""
        if new is self.state:
            return None
        return self._to(new, now_s, reason)

    @property
    def probes_in_flight(self) -> int:
        return len(self._probes)


class ChannelHealth:
    """Window + breaker for one channel."""

    __slots__ = ("breaker", "channel_id", "window")

    def __init__(self, channel_id: str, policy: HealthPolicy) -> None:
        self.channel_id = channel_id
        self.window = HealthWindow(policy)
        self.breaker = Breaker(channel_id, policy)

    def acquire(self, now_s: float) -> tuple[Permit | None, Transition | None]:
        return self.breaker.acquire(now_s)

    def release(
        self,
        permit: Permit,
        now_s: float,
        outcome: OutcomeClass | None,
        latency_ms: float | None,
    ) -> Transition | None:
        if outcome is not None and latency_ms is not None:
            self.window.record(now_s, outcome, latency_ms)
        return self.breaker.release(permit, now_s, outcome, self.window)

    def snapshot(self, now_s: float) -> dict[str, object]:
        self.breaker.poll(now_s)
        p95 = self.window.latency_p95_ms(now_s)
        ewma = self.window.latency_ewma_ms
        return {
            "breaker_state": self.breaker.state.value,
            "success_rate_ppm": self.window.success_rate_ppm(now_s),
            "samples": self.window.counted(now_s),
            "latency_ms_ewma": None if ewma is None else round(ewma, 1),
            "latency_ms_p95": None if p95 is None else round(p95, 1),
            "counts": self.window.counts(now_s),
            "probes_in_flight": self.breaker.probes_in_flight,
        }


class HealthBoard:
    """Every channel's health, created on first use; collects breaker transitions so the
    caller can announce them (``drain_transitions``)."""

    def __init__(self, policy: HealthPolicy) -> None:
        self.policy = policy
        self.channels: dict[str, ChannelHealth] = {}
        self._transitions: list[Transition] = []

    def get(self, channel_id: str) -> ChannelHealth:
        health = self.channels.get(channel_id)
        if health is None:
            health = self.channels[channel_id] = ChannelHealth(channel_id, self.policy)
        return health

    def _note(self, transition: Transition | None) -> None:
        if transition is not None:
            self._transitions.append(transition)

    def acquire(self, channel_id: str, now_s: float) -> Permit | None:
        permit, transition = self.get(channel_id).acquire(now_s)
        self._note(transition)
        return permit

    def release(
        self,
        permit: Permit,
        now_s: float,
        outcome: OutcomeClass | None,
        latency_ms: float | None,
    ) -> None:
        self._note(self.get(permit.channel_id).release(permit, now_s, outcome, latency_ms))

    def allows(self, channel_id: str, now_s: float) -> bool:
        health = self.get(channel_id)
        self._note(health.breaker.poll(now_s))
        return health.breaker.allows(now_s)

    def live(self, channel_ids: Iterable[str], now_s: float) -> dict[str, LiveView]:
        """(success rate ppm, latency EWMA ms, breaker lets a request through) per channel.

        Runs for every channel on every decision, so it is written flat: no per-channel
        method calls unless a breaker is not closed or the window has something to forget."""
        out: dict[str, LiveView] = {}
        channels = self.channels
        closed = BreakerState.CLOSED
        prior = self.policy.prior_success_ppm
        size_max = self.policy.window_size_max
        horizon = now_s - self.policy.window_age_max_s
        for channel_id in channel_ids:
            health = channels.get(channel_id)
            if health is None:
                health = self.get(channel_id)
            breaker = health.breaker
            if breaker.state is closed:
                allows = True
            else:
                self._note(breaker.poll(now_s))
                allows = breaker.allows(now_s)
            window = health.window
            samples = window._samples
            if samples and (len(samples) > size_max or samples[0].at_s < horizon):
                window._evict(now_s)
            counted = window._healthy + window._faults
            rate = prior if counted == 0 else window._healthy * PPM // counted
            out[channel_id] = LiveView(rate, window.latency_ewma_ms or 0.0, allows)
        return out

    def adopt(self, channel_id: str, state: BreakerState, now_s: float) -> Transition | None:
        """A peer instance announced a breaker state: follow it (open/closed only; half-open
        is each instance's own probing phase)."""
        if state is BreakerState.HALF_OPEN:
            return None
        health = self.get(channel_id)
        if state is BreakerState.CLOSED and health.breaker.state is BreakerState.CLOSED:
            return None
        transition = health.breaker.force(state, now_s, "peer_announced")
        if transition is not None and state is BreakerState.CLOSED:
            health.window.reset()
        return transition

    def idle_channels(self, channel_ids: list[str], now_s: float) -> list[str]:
        """Channels that deserve a probe: no sample for a while, or half-open with room."""
        out = []
        for channel_id in channel_ids:
            health = self.get(channel_id)
            self._note(health.breaker.poll(now_s))
            last = health.window.last_sample_at()
            idle = last is None or now_s - last >= self.policy.idle_probe_after_s
            if health.breaker.state is BreakerState.HALF_OPEN:
                if health.breaker.allows(now_s):  # probe at once: recovery should be quick
                    out.append(channel_id)
            elif health.breaker.state is BreakerState.CLOSED and idle:
                out.append(channel_id)
        return out

    def drain_transitions(self) -> list[Transition]:
        out, self._transitions = self._transitions, []
        return out
