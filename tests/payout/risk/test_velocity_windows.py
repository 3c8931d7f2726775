"""Sliding windows at their exact edges, and the counters against a brute-force model."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.payout.risk import Engine, RiskLimits, compile_ruleset
from services.payout.risk.counters import Counters, Series, Subject
from tests.payout.risk.builders import T0, payout, rule, ruleset


def count_rule(window_s: int, max_count: int = 1) -> dict[str, object]:
    return rule("w", "velocity", "block", scope="merchant", window_s=window_s, max_count=max_count)


def test_a_payout_counts_until_the_window_has_fully_passed_it() -> None:
    engine = Engine(ruleset(count_rule(60)))
    engine.record(payout(0))
    assert engine.evaluate(payout(1, seconds=59.999)).outcome == "block"
    assert engine.evaluate(payout(1, seconds=60)).outcome == "allow"


def test_the_window_is_the_same_at_the_first_and_the_last_millisecond_of_a_bucket() -> None:
    engine = Engine(ruleset(count_rule(60)))
    engine.record(payout(0, seconds=0.999))
    assert engine.evaluate(payout(1, seconds=59.0)).outcome == "block"
    # Edges are exact to the bucket width (1 s by default): 0.999 s is in bucket 0.
    assert engine.evaluate(payout(1, seconds=60.0)).outcome == "allow"


def test_the_limit_is_reached_by_the_payout_that_makes_max_count_plus_one() -> None:
    engine = Engine(ruleset(count_rule(10, max_count=3)))
    for i in range(3):
        assert engine.evaluate(payout(i, seconds=i)).outcome == "allow"
        engine.record(payout(i, seconds=i))
    assert engine.evaluate(payout(3, seconds=3)).outcome == "block"
    # the first payout (t=0) leaves the 10 s window at t=10; two remain, so a third is fine
    assert engine.evaluate(payout(3, seconds=10)).outcome == "allow"


def test_amount_window_edges_are_exact() -> None:
    r = rule(
        "sum",
        "velocity",
        "review",
        scope="merchant",
        window_s=3600,
        currency="EUR",
        max_amount_minor=100,
    )
    engine = Engine(ruleset(r))
    engine.record(payout(0, amount=60))
    engine.record(payout(1, amount=40, seconds=1800))
    assert engine.evaluate(payout(2, amount=1, seconds=3599)).outcome == "review"
    assert engine.evaluate(payout(2, amount=60, seconds=3600)).outcome == "allow"
    assert engine.evaluate(payout(2, amount=61, seconds=3600)).outcome == "review"
    assert engine.evaluate(payout(2, amount=100, seconds=5400)).outcome == "allow"


def test_a_coarser_bucket_moves_the_edges_to_whole_buckets() -> None:
    limits = RiskLimits(bucket_ms=60_000)
    doc = {"format": 1, "defaults": [count_rule(300)]}
    engine = Engine(compile_ruleset(doc, version=1, limits=limits))
    engine.record(payout(0, seconds=59))  # bucket [0, 60)
    assert engine.evaluate(payout(1, seconds=299)).outcome == "block"
    assert engine.evaluate(payout(1, seconds=300)).outcome == "allow"


def test_memory_stays_bounded_as_idle_keys_are_evicted() -> None:
    limits = RiskLimits(
        velocity_horizon_s=60, velocity_keys_max=50, beneficiary_keys_max=100, anomaly_keys_max=20
    )
    counters = Counters(limits)
    for i in range(2_000):
        facts = payout(i, seconds=i, merchant=f"mer_{i % 300}", account=f"FR{i}")
        counters.record(Subject.of(facts))
    stats = counters.stats()
    assert stats["velocity_keys"] <= 3 * 2 * 50
    assert stats["anomaly_keys"] <= 20
    assert stats["beneficiary_keys"] <= 100


def test_a_capped_series_folds_old_buckets_forward_and_never_undercounts() -> None:
    series = Series()
    for b in range(100):
        series.add(b, 1, oldest_bucket=0, buckets_max=10)
    assert len(series) == 10
    # Every window still sees at least the events truly in it.
    for first in range(100):
        count, amount = series.since(first)
        assert count >= 100 - first and amount == count
    assert series.since(0) == (100, 100)


events = st.lists(
    st.tuples(st.integers(0, 5_000), st.integers(1, 10**12)), min_size=0, max_size=80
).map(sorted)


@settings(max_examples=200, deadline=None)
@given(events=events, horizon=st.integers(1, 6_000), query=st.integers(0, 6_000))
def test_series_window_sums_equal_a_brute_force_sum(
    events: list[tuple[int, int]], horizon: int, query: int
) -> None:
    series = Series()
    for bucket, amount in events:
        series.add(bucket, amount, oldest_bucket=bucket - horizon + 1, buckets_max=10**6)
    last = events[-1][0] if events else 0
    first = max(query, last - horizon + 1)  # what the counters still promise to know
    kept = [(b, a) for b, a in events if b >= first]
    assert series.since(first) == (len(kept), sum(a for _, a in kept))


@settings(max_examples=100, deadline=None)
@given(
    offsets_ms=st.lists(st.integers(0, 600_000), min_size=1, max_size=40).map(sorted),
    now_ms=st.integers(0, 700_000),
    window_s=st.sampled_from([1, 5, 60, 300]),
)
def test_engine_velocity_counts_exactly_the_payouts_inside_the_window(
    offsets_ms: list[int], now_ms: int, window_s: int
) -> None:
    max_count = 3
    engine = Engine(ruleset(count_rule(window_s, max_count)))
    history = [payout(i, at=T0 + timedelta(milliseconds=o)) for i, o in enumerate(offsets_ms)]
    engine.warm(history)
    now = max(now_ms, offsets_ms[-1])
    # whole-second timestamps are exact; a payout at t counts while bucket(t) > bucket(now) - W
    inside = [o for o in offsets_ms if o // 1000 > now // 1000 - window_s]
    decision = engine.evaluate(payout(99, at=T0 + timedelta(milliseconds=now)))
    assert (decision.outcome == "block") == (len(inside) + 1 > max_count)


@settings(max_examples=100, deadline=None)
@given(
    history=st.lists(
        st.tuples(st.integers(0, 400_000), st.integers(1, 50_000), st.booleans()),
        max_size=40,
    ).map(sorted),
    limits=st.lists(
        st.tuples(st.sampled_from([1, 10, 60, 300]), st.integers(0, 6), st.integers(1, 200_000)),
        min_size=1,
        max_size=6,
    ),
    amount=st.integers(1, 50_000),
)
def test_every_velocity_rule_fires_exactly_when_a_brute_force_count_says_so(
    history: list[tuple[int, int, bool]], limits: list[tuple[int, int, int]], amount: int
) -> None:
    rules = []
    for i, (window_s, max_count, max_amount) in enumerate(limits):
        rules.append(
            rule(
                f"c{i}",
                "velocity",
                "review",
                scope="merchant_beneficiary",
                window_s=window_s,
                max_count=max_count,
            )
        )
        rules.append(
            rule(
                f"a{i}",
                "velocity",
                "review",
                scope="merchant",
                window_s=window_s,
                currency="EUR",
                max_amount_minor=max_amount,
            )
        )
    engine = Engine(ruleset(*rules))
    # the booleans pick one of two beneficiaries; the merchant scope sees both
    engine.warm(
        payout(i, at=T0 + timedelta(milliseconds=o), amount=a, account="FR1" if b else "FR2")
        for i, (o, a, b) in enumerate(history)
    )
    now = (history[-1][0] if history else 0) + 500
    decision = engine.evaluate(
        payout(999, at=T0 + timedelta(milliseconds=now), amount=amount, account="FR1")
    )
    fired = {f.rule_id for f in decision.fired}
    for i, (window_s, max_count, max_amount) in enumerate(limits):
        inside = [(a, b) for o, a, b in history if o // 1000 > now // 1000 - window_s]
        assert (f"c{i}" in fired) == (sum(1 for _, b in inside if b) + 1 > max_count)
        assert (f"a{i}" in fired) == (sum(a for a, _ in inside) + amount > max_amount)
