"""A short chaos run: SIGKILL of the payout and ledger processes and a bank outage while
payouts flow, then every money invariant (the long run is ``make chaos``)."""

from __future__ import annotations

import pytest

from tests.chaos.run import ChaosConfig, chaos

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(150)
async def test_sigkills_and_a_bank_outage_under_traffic_break_no_invariant() -> None:
    report = await chaos(
        ChaosConfig(
            duration_s=14,
            rate=4,
            merchants=2,
            schedule=((3.0, "kill:payout"), (6.0, "bank_outage"), (10.0, "kill:ledger")),
            settle_s=30,
            own_servers=False,  # never restarts a server, so the machine's are fine
            with_recon=False,
        )
    )
    print(report.table())
    assert [i.fault for i in report.injections] == ["kill:payout", "bank_outage", "kill:ledger"]
    assert report.counts["payouts"] >= 20, report.counts
    checked = [i for i in report.invariants if i.ok is not None]
    assert len(checked) == 5, report.table()
    assert report.ok, report.table()
