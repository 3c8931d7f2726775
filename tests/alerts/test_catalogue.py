"""The alert catalogue knows every code the payout service raises, gives each a severity and
a cause, and stores codes it does not know instead of dropping them."""

from __future__ import annotations

import re

from services.payout.risk import alerts as risk_alerts
from services.recon.domain import taxonomy
from services.recon.domain.taxonomy import Severity
from tests.support.infra import ROOT

RAISED = re.compile(r"raise_alert\(\s*conn,\s*code=\"([a-z0-9_]+)\"", re.S)


def codes_raised_by_the_payout_service() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "services" / "payout").rglob("*.py"):
        found |= set(RAISED.findall(path.read_text()))
    return found


def test_every_alert_code_the_payout_service_raises_is_in_the_catalogue() -> None:
    raised = codes_raised_by_the_payout_service()
    # The scan must see the call sites, or this test could pass on an empty set.
    assert {"payout_outcome_unresolved", "webhook_dead_lettered", "outcome_conflict"} <= raised
    risk = {risk_alerts.LISTED_BENEFICIARY_BLOCKED, risk_alerts.REVIEW_BURST}
    missing = (raised | risk) - set(taxonomy.PAYOUT_ALERTS)
    assert not missing, f"add these codes to PAYOUT_ALERTS: {sorted(missing)}"


def test_risk_alerts_keep_the_severity_the_risk_engine_documents() -> None:
    assert taxonomy.payout_alert_severity("risk_listed_beneficiary_blocked", "high") == (
        Severity.HIGH,
        True,
    )
    assert taxonomy.payout_alert_severity("risk_review_burst", "medium") == (
        Severity.MEDIUM,
        True,
    )


def test_the_catalogue_severity_is_a_floor_a_producer_may_raise_but_not_lower() -> None:
    assert taxonomy.payout_alert_severity("recon_outcome_conflict", "critical")[0] is (
        Severity.CRITICAL
    )
    assert taxonomy.payout_alert_severity("recon_outcome_conflict", "low")[0] is Severity.HIGH
    assert taxonomy.payout_alert_severity("outcome_conflict", None)[0] is Severity.CRITICAL
    assert taxonomy.payout_alert_severity("webhook_dead_lettered", "bogus")[0] is Severity.MEDIUM


def test_an_unknown_code_gets_the_default_severity_unless_the_producer_says_worse() -> None:
    assert taxonomy.payout_alert_severity("brand_new_code", "low") == (
        taxonomy.UNKNOWN_ALERT_SEVERITY,
        False,
    )
    assert taxonomy.payout_alert_severity("brand_new_code", "critical") == (
        Severity.CRITICAL,
        False,
    )


def test_a_cause_groups_repeats_by_the_subject_the_catalogue_names() -> None:
    def cause(code: str, **kw: object) -> str:
        return taxonomy.payout_alert_cause(code, **{"alert_id": "alr_1", **kw})  # type: ignore[arg-type]

    blocked = cause(
        "risk_listed_beneficiary_blocked",
        payout_id="po_1",
        merchant_id="mer_1",
        rule_ids=("b", "a"),
    )
    again = cause(
        "risk_listed_beneficiary_blocked",
        payout_id="po_2",
        merchant_id="mer_1",
        rule_ids=("a", "b"),
    )
    other_rule = cause(
        "risk_listed_beneficiary_blocked", payout_id="po_3", merchant_id="mer_1", rule_ids=("c",)
    )
    assert blocked == again != other_rule
    assert cause("risk_review_burst", payout_id="po_1", merchant_id="mer_1") == cause(
        "risk_review_burst", payout_id="po_9", merchant_id="mer_1"
    )
    assert cause("payout_outcome_unresolved", payout_id="po_1") != cause(
        "payout_outcome_unresolved", payout_id="po_2"
    )
    # Nothing to group a dead-lettered webhook by: each one is its own alert.
    assert cause("webhook_dead_lettered", payout_id=None, alert_id="alr_1") != cause(
        "webhook_dead_lettered", payout_id=None, alert_id="alr_2"
    )
    # A code recon does not know yet still gets a cause, by payout when there is one.
    assert cause("brand_new_code", payout_id="po_1") == "brand_new_code:payout:po_1"


def test_payout_codes_never_shadow_recons_own_codes() -> None:
    assert not set(taxonomy.PAYOUT_ALERTS) & set(taxonomy.ALERTS)
