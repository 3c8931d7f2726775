"""The rule-set example in docs/RISK.md is a valid document and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

from services.payout.risk import Engine, compile_ruleset
from tests.payout.risk.builders import payout

DOC = Path(__file__).resolve().parents[3] / "docs" / "RISK.md"


def test_the_documented_example_compiles_and_judges_as_described() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 1
    rs = compile_ruleset(blocks[0], version=7)
    engine = Engine(rs)
    blocked = engine.evaluate(payout(account="de89370400440532013000"))
    assert blocked.failure_code == "risk_blocked" and blocked.ruleset_version == 7
    reviewed = engine.evaluate(payout(name="JOSE ALVAREZ", account="FR01"))
    assert reviewed.outcome == "review"
    night = engine.evaluate(payout(merchant="mer_nightshift", seconds=12 * 3600, account="FR01"))
    assert [f.rule_id for f in night.fired] == ["business-hours"]
