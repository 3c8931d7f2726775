"""docs/RUNBOOK.md has a section for every alert code the suite can raise."""

from __future__ import annotations

import re

from services.recon.domain.taxonomy import ALERTS, PAYOUT_ALERTS
from tests.support.infra import ROOT

RUNBOOK = ROOT / "docs" / "RUNBOOK.md"


def test_every_alert_code_has_a_runbook_section_saying_what_to_check_and_do() -> None:
    text = RUNBOOK.read_text()
    sections = dict(
        (m.group(1), m.end()) for m in re.finditer(r"^### `([a-z0-9_]+)`", text, re.MULTILINE)
    )
    codes = set(ALERTS) | set(PAYOUT_ALERTS)
    missing = sorted(codes - set(sections))
    assert not missing, f"alert codes without a runbook section: {missing}"
    for code in codes:
        start = sections[code]
        following = [pos for pos in sections.values() if pos > start]
        body = text[start : min(following, default=len(text))]
        assert "**Means.**" in body, code
        assert "**Do.**" in body or "**Check / do.**" in body, code
