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


def test_records_incomplete_names_the_setting_recon_tells_the_operator_to_raise() -> None:
    from services.recon.adapters.records import RecordsIncomplete, check_trailer

    try:
        check_trailer(b'{"end": true, "rows": 2, "truncated": true}', 2)
    except RecordsIncomplete as exc:
        named = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", str(exc)))
    else:
        raise AssertionError("a truncated export was taken as complete")
    assert named, "the error names no setting"
    text = RUNBOOK.read_text()
    start = text.index("### `records_incomplete`")
    section = text[start : text.index("\n#", start + 1)]
    do = section[section.index("**Do.**") :]
    settings = (ROOT / ".env.example").read_text()
    for name in named:
        assert f"`{name}`" in do, f"records_incomplete's Do does not say to raise {name}"
        assert f"\n{name}=" in settings, f"{name} is not in .env.example"
