"""Pure routing rules: breaker with a fake clock, health window, decisions, classification."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.router.adapters.connectors.banksim import transformers
from services.router.domain.attempts import AttemptStatus, BankOutcome, after_inquiry
from services.router.domain.config import ConfigError, parse_channels, parse_rules
from services.router.domain.decision import LiveView, PayoutFacts, decide
from services.router.domain.health import (
    BreakerState,
    HealthBoard,
    HealthPolicy,
    HealthWindow,
    OutcomeClass,
)

OK = OutcomeClass.SUCCEEDED
DNE = OutcomeClass.DEFINITE_NON_EXECUTION
UNKNOWN = OutcomeClass.UNKNOWN_OUTCOME
BENEFICIARY = OutcomeClass.BENEFICIARY_ERROR
NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

POLICY = HealthPolicy(
    window_size_max=20,
    window_age_max_s=10.0,
    min_samples_to_judge=10,
    failure_rate_open_ppm=500_000,
    consecutive_faults_open=3,
    open_duration_s=5.0,
    half_open_probes_max=2,
    half_open_successes_to_close=2,
    probe_lease_s=3.0,
    idle_probe_after_s=30.0,
)


def _feed(board: HealthBoard, channel: str, now: float, outcome: OutcomeClass) -> None:
    permit = board.acquire(channel, now)
    assert permit is not None
    board.release(permit, now, outcome, 10.0)


def test_breaker_opens_after_consecutive_faults_and_half_opens_after_the_open_duration() -> None:
    board = HealthBoard(POLICY)
    _feed(board, "ch", 0.0, DNE)
    _feed(board, "ch", 0.1, UNKNOWN)
    assert board.get("ch").breaker.state is BreakerState.CLOSED
    _feed(board, "ch", 0.2, DNE)
    assert board.get("ch").breaker.state is BreakerState.OPEN
    assert board.acquire("ch", 4.9) is None and not board.allows("ch", 4.9)
    assert board.allows("ch", 5.2)
    assert board.get("ch").breaker.state is BreakerState.HALF_OPEN
    transitions = [(t.old, t.new) for t in board.drain_transitions()]
    assert transitions == [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
    ]


def test_half_open_allows_a_bounded_number_of_probes_and_closes_after_enough_successes() -> None:
    board = HealthBoard(POLICY)
    for i in range(3):
        _feed(board, "ch", i * 0.1, DNE)
    first = board.acquire("ch", 6.0)
    second = board.acquire("ch", 6.0)
    assert first is not None and second is not None and first.probe and second.probe
    assert board.acquire("ch", 6.0) is None  # bounded
    board.release(first, 6.1, OK, 5.0)
    assert board.get("ch").breaker.state is BreakerState.HALF_OPEN
    board.release(second, 6.2, OK, 5.0)
    assert board.get("ch").breaker.state is BreakerState.CLOSED
    assert board.get("ch").window.success_rate_ppm(6.2) == POLICY.prior_success_ppm


def test_a_failed_probe_reopens_and_a_released_probe_without_outcome_frees_its_slot() -> None:
    board = HealthBoard(POLICY)
    for i in range(3):
        _feed(board, "ch", i * 0.1, DNE)
    probe = board.acquire("ch", 6.0)
    assert probe is not None
    board.release(probe, 6.1, None, None)  # e.g. cancelled: nothing learnt
    again = board.acquire("ch", 6.2)
    other = board.acquire("ch", 6.2)
    assert again is not None and other is not None
    board.release(again, 6.3, UNKNOWN, 5000.0)
    breaker = board.get("ch").breaker
    assert breaker.state is BreakerState.OPEN and breaker.opened_at_s == 6.3
    board.release(other, 6.4, OK, 5.0)  # stale probe from the old half-open period: ignored
    assert breaker.state is BreakerState.OPEN


def test_a_probe_never_released_is_reclaimed_so_half_open_cannot_get_stuck() -> None:
    board = HealthBoard(POLICY)
    for i in range(3):
        _feed(board, "ch", i * 0.1, DNE)
    assert board.acquire("ch", 6.0) is not None
    assert board.acquire("ch", 6.0) is not None
    assert board.acquire("ch", 8.9) is None
    late = board.acquire("ch", 9.1)  # both leases (3 s) expired
    assert late is not None and late.probe


def test_beneficiary_errors_never_hurt_a_channel() -> None:
    board = HealthBoard(POLICY)
    for i in range(30):
        _feed(board, "ch", i * 0.01, BENEFICIARY)
    health = board.get("ch")
    assert health.breaker.state is BreakerState.CLOSED
    assert health.window.success_rate_ppm(1.0) == POLICY.prior_success_ppm
    assert health.window.counts(1.0)["beneficiary_error"] == 20  # window keeps the last 20


def test_failure_rate_over_the_window_opens_without_a_run_of_faults() -> None:
    board = HealthBoard(POLICY)
    pattern = [OK, DNE, DNE, OK, DNE, DNE, OK, DNE, DNE, OK]  # 60% faults, never 3 in a row
    for i, outcome in enumerate(pattern):
        _feed(board, "ch", i * 0.1, outcome)
    assert board.get("ch").breaker.state is BreakerState.OPEN
    assert board.drain_transitions()[0].reason == "failure_rate"


def test_window_forgets_by_time_and_by_count_and_reports_latency() -> None:
    window = HealthWindow(POLICY)
    for i in range(25):
        window.record(float(i) * 0.01, OK if i % 5 else DNE, float(i))
    assert window.counted(0.3) == 20  # by count
    assert window.success_rate_ppm(0.3) == 16 * 1_000_000 // 20
    assert window.latency_p95_ms(0.3) == 23.0
    assert window.latency_ewma_ms is not None and 15 < window.latency_ewma_ms < 24
    assert window.counted(10.5) == 0  # by time: everything older than 10 s is gone


def test_idle_channels_get_probed_and_half_open_ones_at_once() -> None:
    board = HealthBoard(POLICY)
    _feed(board, "busy", 100.0, OK)
    for i in range(3):
        _feed(board, "broken", 100.0 + i * 0.1, DNE)
    assert board.idle_channels(["busy", "broken", "never"], 101.0) == ["never"]
    assert board.idle_channels(["busy", "broken"], 106.0) == ["broken"]
    assert board.idle_channels(["busy"], 131.0) == ["busy"]


def test_a_peer_announcement_opens_and_closes_the_local_breaker_but_not_half_open() -> None:
    board = HealthBoard(POLICY)
    assert board.adopt("ch", BreakerState.OPEN, 1.0) is not None
    assert not board.allows("ch", 2.0)
    assert board.adopt("ch", BreakerState.HALF_OPEN, 2.0) is None
    assert board.adopt("ch", BreakerState.CLOSED, 3.0) is not None
    assert board.allows("ch", 3.0)


CHANNELS = parse_channels(
    {
        "channels": [
            {"id": "a", "bank": "alpha", "currency": "EUR", "fee_minor": 10},
            {"id": "b", "bank": "bravo", "currency": "EUR", "fee_minor": 50},
            {"id": "c", "bank": "bravo", "currency": "USD"},
            {
                "id": "d",
                "bank": "delta",
                "currency": "EUR",
                "amount_min_minor": 1,
                "amount_max_minor": 500,
            },
            {"id": "e", "bank": "echo", "currency": "EUR", "beneficiary_banks": ["ZZZ"]},
            {"id": "f", "bank": "fox", "currency": "EUR", "cutoff_utc": "11:00"},
            {
                "id": "g",
                "bank": "golf",
                "currency": "EUR",
                "maintenance_utc": [{"start_utc": "23:00", "end_utc": "13:00"}],
            },
            {"id": "h", "bank": "hotel", "currency": "EUR", "daily_quota_minor": 1500},
            {"id": "i", "bank": "india", "currency": "EUR", "enabled": False},
            {"id": "k", "bank": "kilo", "currency": "EUR"},
            {"id": "m", "bank": "mike", "currency": "EUR"},
        ]
    }
)
GOOD = LiveView(success_rate_ppm=1_000_000, latency_ms=20.0, breaker_allows=True)


def _live(**overrides: LiveView) -> dict[str, LiveView]:
    return {c.id: overrides.get(c.id, GOOD) for c in CHANNELS}


def test_every_filter_names_the_channel_it_removed() -> None:
    facts = PayoutFacts("mer_1", 1000, "EUR", "AAA", NOON)
    decision = decide(
        facts,
        CHANNELS,
        _live(m=LiveView(1_000_000, 1.0, breaker_allows=False)),
        {"h": 600},
        parse_rules(None),
        killed={"k"},
        attempted={"b"},
    )
    excluded = {c.channel_id: c.excluded_by for c in decision.candidates}
    assert excluded == {
        "a": None,
        "b": "already_attempted",
        "c": "currency",
        "d": "amount_range",
        "e": "beneficiary_bank",
        "f": "cutoff",
        "g": "maintenance",
        "h": "daily_quota",
        "i": "disabled",
        "k": "kill_switch",
        "m": "breaker_open",
    }
    assert decision.chosen_id == "a" and decision.reason == "highest_expected_value"


def test_expected_value_weighs_success_rate_against_fee_and_latency_breaks_ties() -> None:
    facts = PayoutFacts("mer_1", 10_000, "EUR", "AAA", NOON)
    only_ab = tuple(c for c in CHANNELS if c.id in ("a", "b", "k", "m"))
    # a: 0.95 * (10000-10) = 9490; b: 1.0 * (10000-50) = 9950 → b wins despite its fee.
    live = {
        "a": LiveView(950_000, 5.0, True),
        "b": LiveView(1_000_000, 50.0, True),
        "k": LiveView(1_000_000, 30.0, True),
        "m": LiveView(1_000_000, 10.0, True),
    }
    decision = decide(facts, only_ab, live, {}, parse_rules(None))
    scores = {c.channel_id: c.expected_value_minor for c in decision.candidates}
    assert scores == {"a": 9490, "b": 9950, "k": 10000, "m": 10000}
    assert decision.chosen_id == "m"  # k and m tie on value; m is faster


def test_merchant_rules_exclude_pin_and_prefer_by_amount_currency_and_bank() -> None:
    rules = parse_rules(
        {
            "rules": [
                {"id": "no_a", "merchant_id": "mer_1", "action": "exclude", "channels": ["a"]},
                {
                    "id": "big_to_b",
                    "merchant_id": "mer_1",
                    "action": "pin",
                    "channels": ["b"],
                    "amount_min_minor": 5000,
                },
                {
                    "id": "aaa_likes_k",
                    "merchant_id": "*",
                    "action": "prefer",
                    "channels": ["k"],
                    "currency": "EUR",
                    "beneficiary_banks": ["AAA"],
                },
            ]
        }
    )
    small = decide(PayoutFacts("mer_1", 100, "EUR", "AAA", NOON), CHANNELS, _live(), {}, rules)
    assert small.chosen_id == "k" and small.reason == "preferred_by_rule:aaa_likes_k"
    assert {c.channel_id: c.excluded_by for c in small.candidates}["a"] == "merchant_rule_exclude"
    big = decide(PayoutFacts("mer_1", 9000, "EUR", "AAA", NOON), CHANNELS, _live(), {}, rules)
    assert big.chosen_id == "b" and big.reason == "pinned_by_rule:big_to_b"
    other = decide(PayoutFacts("mer_2", 100, "EUR", "BBB", NOON), CHANNELS, _live(), {}, rules)
    assert other.chosen_id == "d"  # no rule applies: zero-fee channels tie, id breaks it


def test_a_pin_to_an_ineligible_channel_leaves_no_eligible_channel() -> None:
    rules = parse_rules(
        {"rules": [{"id": "p", "merchant_id": "mer_1", "action": "pin", "channels": ["c"]}]}
    )
    decision = decide(PayoutFacts("mer_1", 100, "EUR", "AAA", NOON), CHANNELS, _live(), {}, rules)
    assert decision.chosen is None and decision.reason == "no_eligible_channel"
    assert all(c["excluded_by"] for c in decision.exclusions())


def test_the_channel_reserved_by_the_tcc_try_is_kept_while_it_is_eligible() -> None:
    facts = PayoutFacts("mer_1", 100, "EUR", "AAA", NOON)
    kept = decide(facts, CHANNELS, _live(), {}, parse_rules(None), reserved_channel="b")
    assert kept.chosen_id == "b" and kept.reason == "reserved_by_tcc_try"
    moved = decide(
        facts, CHANNELS, _live(), {}, parse_rules(None), reserved_channel="b", attempted={"b"}
    )
    assert moved.chosen_id not in (None, "b") and moved.reason == "highest_expected_value"


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"channels": []}, "at least one channel"),
        ({"channels": [{"id": "a", "bank": "x", "currency": "eur"}]}, "ISO 4217"),
        ({"channels": [{"id": "a", "bank": "x", "currency": "EUR", "fee_minor": 1.5}]}, "int"),
        (
            {"channels": [{"id": "a", "bank": "x", "currency": "EUR", "cutoff_utc": "25:00"}]},
            "HH:MM",
        ),
        ({"channels": [{"id": "a", "bank": "x", "currency": "EUR", "surprise": 1}]}, "surprise"),
        (
            {"channels": [{"id": "a", "bank": "x", "currency": "EUR"}] * 2},
            "duplicate channel id",
        ),
        ("just a string", "mapping"),
    ],
)
def test_a_broken_channel_config_is_rejected_whole(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_channels(raw)


def test_a_broken_rule_is_rejected_whole() -> None:
    with pytest.raises(ConfigError, match="action"):
        parse_rules({"rules": [{"id": "r", "merchant_id": "m", "action": "boost", "channels": []}]})


REF = "att_1"


@pytest.mark.parametrize(
    "status, body, expected, code",
    [
        (200, {"reference": REF, "status": "paid", "fee_minor": 25}, OK, None),
        (200, {"reference": REF, "status": "accepted"}, OutcomeClass.SUBMITTED, None),
        (
            200,
            {"reference": REF, "status": "rejected", "failure_code": "rejected"},
            DNE,
            "rejected",
        ),
        (
            200,
            {"reference": REF, "status": "rejected", "failure_code": "insufficient_liquidity"},
            DNE,
            "insufficient_liquidity",
        ),
        (
            422,
            {"reference": REF, "status": "rejected", "failure_code": "account_closed"},
            BENEFICIARY,
            "account_closed",
        ),
        (503, {"reference": REF, "status": "rejected", "failure_code": "outage"}, DNE, "outage"),
        (503, {"code": "bank_unavailable"}, UNKNOWN, "bank_unavailable"),
        (500, {"code": "bank_internal_error"}, UNKNOWN, "bank_internal_error"),
        (502, None, UNKNOWN, "http_502"),
        (409, {"code": "reference_reused"}, UNKNOWN, "reference_reused"),
        (422, {"code": "currency_not_supported"}, DNE, "currency_not_supported"),
        (200, {"reference": "att_other", "status": "paid"}, UNKNOWN, "unreadable_reply"),
        (200, {"reference": REF, "status": "settling"}, UNKNOWN, "unknown_bank_status"),
        (200, {"reference": REF, "status": "processing"}, UNKNOWN, "bank_processing"),
    ],
)
def test_every_bank_answer_is_classified(
    status: int, body: object, expected: OutcomeClass, code: str | None
) -> None:
    outcome = transformers.from_transfer_response(status, body, reference=REF)
    assert outcome.outcome is expected
    assert outcome.failure_code == code


def test_not_found_proves_non_execution_only_after_the_grace_period() -> None:
    answer = transformers.from_inquiry_response(404, {"code": "transfer_not_found"}, reference=REF)
    assert answer.not_found
    early = after_inquiry(AttemptStatus.UNKNOWN, answer, sent_age_s=1, not_found_grace_s=30)
    assert early is None
    late = after_inquiry(AttemptStatus.UNKNOWN, answer, sent_age_s=31, not_found_grace_s=30)
    assert late is not None and late.outcome is DNE and late.failure_code == "transfer_not_found"
    unreachable = BankOutcome(UNKNOWN, failure_code="inquiry_unreachable")
    assert (
        after_inquiry(AttemptStatus.SENDING, unreachable, sent_age_s=99, not_found_grace_s=0)
        is None
    )


@pytest.mark.parametrize(
    "current", [AttemptStatus.SENDING, AttemptStatus.UNKNOWN, AttemptStatus.SUBMITTED]
)
def test_processing_from_an_inquiry_leaves_the_attempt_unresolved_however_late(
    current: AttemptStatus,
) -> None:
    body = {"reference": REF, "status": "processing", "bank_reference": "NRTH1", "fee_minor": 0}
    answer = transformers.from_inquiry_response(200, body, reference=REF)
    assert answer.outcome is UNKNOWN and not answer.not_found
    assert answer.failure_code == "bank_processing" and answer.bank_reference == "NRTH1"
    assert after_inquiry(current, answer, sent_age_s=10_000, not_found_grace_s=3) is None


def test_settings_refuse_a_not_found_grace_shorter_than_the_bank_timeout() -> None:
    from services.kit.settings import SettingsError
    from services.router.settings import from_env

    assert from_env({}).not_found_grace_s == 30.0
    with pytest.raises(SettingsError, match="ROUTER_NOT_FOUND_GRACE_MS"):
        from_env({"ROUTER_BANK_TIMEOUT_MS": "5000", "ROUTER_NOT_FOUND_GRACE_MS": "1000"})
