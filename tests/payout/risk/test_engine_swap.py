"""Publishing under load: every decision is made by one whole rule-set version."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from services.payout.risk import Decision, Engine, RuleSet, StaleRuleSet
from tests.payout.risk.builders import payout, rule, ruleset

VERSIONS = 40
RULES_PER_VERSION = 12


def version_set(v: int) -> RuleSet:
    """Every rule of version v fires on the test payout and carries v in its id; the outcome
    alternates so a mix of two versions would also show in the outcome."""
    outcome = "block" if v % 2 else "review"
    rules: list[dict[str, Any]] = []
    for i in range(RULES_PER_VERSION // 2):
        rules.append(
            rule(f"v{v}-name-{i}", "blocklist", outcome, field="name", values=["Alice Martin"])
        )
        rules.append(
            rule(
                f"v{v}-vel-{i}",
                "velocity",
                outcome,
                scope="merchant",
                window_s=60 * (i + 1),
                max_count=0,
            )
        )
    return ruleset(*rules, version=v)


def assert_whole(decision: Decision, live: set[int]) -> None:
    v = decision.ruleset_version
    assert v in live
    assert len(decision.fired) == RULES_PER_VERSION
    assert {f.rule_id.split("-")[0] for f in decision.fired} == {f"v{v}"}
    assert decision.outcome == ("block" if v % 2 else "review")


def test_threads_evaluating_during_swaps_each_see_exactly_one_published_version() -> None:
    sets = [version_set(v) for v in range(1, VERSIONS + 1)]
    engine = Engine(sets[0])
    published = {1}
    stop = threading.Event()
    decisions: list[Decision] = []
    errors: list[BaseException] = []

    def evaluator(n: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                facts = payout(n * 1_000_000 + i, seconds=i % 50)
                decisions.append(engine.evaluate(facts))
                engine.record(facts)
                i += 1
        except BaseException as exc:  # surfaced to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=evaluator, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    seen_before = 0
    for rs in sets[1:]:
        # wait until evaluations ran under the current version before publishing the next
        while len(decisions) < seen_before + 50 and not errors:
            threading.Event().wait(0.0005)
        seen_before = len(decisions)
        published.add(rs.version)
        assert engine.install(rs)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    for decision in decisions:
        assert_whole(decision, published)
    versions_seen = {d.ruleset_version for d in decisions}
    assert len(versions_seen) >= VERSIONS // 2, versions_seen


async def test_asyncio_tasks_record_the_version_that_was_live_when_they_were_judged() -> None:
    engine = Engine(version_set(1))
    live: list[int] = [1]
    results: list[tuple[int, Decision]] = []

    async def request(n: int) -> None:
        for i in range(30):
            current = engine.version
            decision = engine.evaluate(payout(n * 100 + i))
            results.append((current, decision))
            await asyncio.sleep(0)

    async def publisher() -> None:
        for v in range(2, VERSIONS + 1):
            await asyncio.sleep(0)
            engine.install(version_set(v))
            live.append(v)

    await asyncio.gather(publisher(), *(request(n) for n in range(20)))
    for current, decision in results:
        assert decision.ruleset_version == current
        assert_whole(decision, set(live))
    assert engine.version == VERSIONS


def test_an_older_or_repeated_version_is_not_installed_and_a_conflicting_one_is_refused() -> None:
    engine = Engine(version_set(5))
    assert not engine.install(version_set(4))
    assert not engine.install(version_set(5))
    assert engine.version == 5
    other_five = ruleset(rule("x", "new_beneficiary", "review", cooldown_s=1), version=5)
    with pytest.raises(StaleRuleSet):
        engine.install(other_five)
    assert engine.install(version_set(6)) and engine.version == 6


def test_counters_survive_a_swap_so_a_new_version_sees_recent_traffic() -> None:
    engine = Engine(ruleset(version=1))
    for i in range(3):
        engine.record(payout(i, seconds=i))
    engine.install(
        ruleset(
            rule("v", "velocity", "review", scope="merchant", window_s=60, max_count=3), version=2
        )
    )
    decision = engine.evaluate(payout(9, seconds=10))
    assert (decision.outcome, decision.ruleset_version) == ("review", 2)


def test_the_same_input_always_gets_the_same_decision() -> None:
    engine = Engine(version_set(3))
    facts = payout(1)
    assert engine.evaluate(facts) == engine.evaluate(facts)


def test_recording_the_same_payout_twice_counts_it_once() -> None:
    engine = Engine(
        ruleset(rule("v", "velocity", "review", scope="merchant", window_s=60, max_count=1))
    )
    assert engine.record(payout(1)) is True
    assert engine.record(payout(1)) is False  # e.g. our own payout.created event coming back
    assert engine.warm([payout(1), payout(2, seconds=1)]) == 1
    assert engine.evaluate(payout(3, seconds=2)).fired[0].detail.startswith("3 payouts")
