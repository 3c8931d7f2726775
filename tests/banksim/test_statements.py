"""Statement files from the real simulator: valid per format, balanced, carrying our
references and fees, and discrepancies described by a machine-readable answer key."""

from __future__ import annotations

import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.banksim.conftest import ADMIN_HEADERS, BANK_HEADERS, TEST_BANKS, transfer
from tests.banksim.statement_readers import READERS, Read
from tests.support.processes import ServiceProcess

EPOCH = date(2024, 1, 1)  # the default statement_epoch


async def pay(
    http: aiohttp.ClientSession, sim: ServiceProcess, bank: str, reference: str, **kw: Any
) -> dict[str, Any]:
    async with http.post(
        f"{sim.url}/banks/{bank}/transfers", json=transfer(reference, **kw), headers=BANK_HEADERS
    ) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["status"] == "paid", body
        return body


async def statement(
    http: aiohttp.ClientSession, sim: ServiceProcess, body: dict[str, Any], expect: int = 201
) -> dict[str, Any]:
    async with http.post(f"{sim.url}/admin/statements", json=body, headers=ADMIN_HEADERS) as resp:
        answer = await resp.json(content_type=None)
        assert resp.status == expect, answer
        return answer


async def value_dates(
    http: aiohttp.ClientSession, sim: ServiceProcess, bank: str
) -> dict[str, dict[str, Any]]:
    async with http.get(
        f"{sim.url}/admin/banks/{bank}/executed", params={"status": "paid"}, headers=ADMIN_HEADERS
    ) as resp:
        return {t["reference"]: t for t in (await resp.json())["transfers"]}


def read(file: dict[str, Any]) -> Read:
    content = Path(file["path"]).read_bytes()
    return READERS[file["format"]](content, file["currency"])


@pytest.mark.parametrize(
    ("bank", "fmt"), [("csvbank", "csv"), ("mtbank", "mt940"), ("camtbank", "camt053")]
)
async def test_each_format_writes_a_balanced_statement_with_our_references_and_fees(
    banksim: ServiceProcess, http: aiohttp.ClientSession, bank: str, fmt: str
) -> None:
    assert TEST_BANKS[bank]["statement_format"] == fmt
    long_reference = "att_" + uuid.uuid4().hex[:26]  # longer than MT940's 16x field
    eur = [f"att_{uuid.uuid4().hex[:10]}" for _ in range(3)] + [long_reference]
    for i, reference in enumerate(eur):
        await pay(http, banksim, bank, reference, amount_minor=12_345 + i)
    yen = f"att_{uuid.uuid4().hex[:10]}"
    await pay(http, banksim, bank, yen, amount_minor=98_765, currency="JPY")
    journal = await value_dates(http, banksim, bank)
    day = journal[eur[0]]["value_date"]

    result = await statement(http, banksim, {"bank": bank, "business_date": day})
    files = {f["currency"]: f for f in result["files"]}
    assert set(files) == {"EUR", "JPY"}
    for currency, references in (("EUR", eur), ("JPY", [yen])):
        file = files[currency]
        path = Path(file["path"])
        assert path.parent.name == "inbox" and path.parent.parent.name == bank
        assert not list(path.parent.glob("*.part"))
        parsed = read(file)
        assert parsed.balanced, "opening + lines == closing"
        assert (parsed.opening_minor, parsed.closing_minor) == (
            file["opening_minor"],
            file["closing_minor"],
        )
        expected_number = (date.fromisoformat(day) - EPOCH).days + 1
        assert file["statement_number"] == expected_number
        if parsed.number is not None:
            assert parsed.number == expected_number
        paid_today = {
            r for r, t in journal.items() if t["value_date"] == day and t["currency"] == currency
        }
        payouts = [line for line in parsed.lines if line.kind == "payout"]
        assert {line.reference for line in payouts} == paid_today
        assert set(references) <= paid_today
        for line in payouts:
            truth = journal[line.reference]
            assert line.signed_minor == -truth["amount_minor"]
            assert line.fee_minor == truth["fee_minor"] > 0


async def test_discrepancies_change_the_file_as_the_answer_key_says(
    banksim: ServiceProcess, http: aiohttp.ClientSession
) -> None:
    references = [f"att_{uuid.uuid4().hex[:10]}" for _ in range(8)]
    for i, reference in enumerate(references):
        await pay(http, banksim, "discbank", reference, amount_minor=50_000 + i)
    journal = await value_dates(http, banksim, "discbank")
    day = journal[references[0]]["value_date"]
    before = await statement(
        http, banksim, {"bank": "discbank", "business_date": day, "currency": "EUR"}
    )
    clean = read(before["files"][0])
    assert before["files"][0]["answer_key_path"] is None and clean.balanced

    kinds = [
        "drop_line",
        "unknown_line",
        "amount_changed",
        "duplicate_line",
        "value_date_next_day",
        "returned_payout",
        "balance_broken",
    ]
    result = await statement(
        http,
        banksim,
        {
            "bank": "discbank",
            "business_date": day,
            "currency": "EUR",
            "discrepancies": [{"kind": k} for k in kinds],
        },
    )
    file = result["files"][0]
    assert file["file_name"] != before["files"][0]["file_name"]
    key_path = Path(file["answer_key_path"])
    assert key_path.parent.name == "answers"
    key = json.loads(key_path.read_text())
    assert key["statement_file"] == file["file_name"] and key["business_date"] == day
    assert key["balance_consistent"] is False
    answers = {a["kind"]: a for a in key["discrepancies"]}
    assert set(answers) == set(kinds)
    parsed = read(file)
    refs = [line.reference for line in parsed.lines]

    assert answers["drop_line"]["expected_break"] == "missing_at_bank"
    assert answers["drop_line"]["reference"] not in refs
    unknown = answers["unknown_line"]
    assert unknown["reference"] in refs and unknown["reference"] not in journal
    assert unknown["expected_break"] == "missing_in_ledger"
    changed = answers["amount_changed"]
    line = next(x for x in parsed.lines if x.reference == changed["reference"])
    assert -line.signed_minor == changed["amount_minor"] != changed["original_amount_minor"]
    assert changed["original_amount_minor"] == journal[changed["reference"]]["amount_minor"]
    assert refs.count(answers["duplicate_line"]["reference"]) == 2
    moved = answers["value_date_next_day"]
    line = next(x for x in parsed.lines if x.reference == moved["reference"])
    assert line.value_date == moved["value_date"] != day
    returned = answers["returned_payout"]
    credit = [x for x in parsed.lines if x.kind == "return"]
    assert [(x.reference, x.signed_minor) for x in credit] == [
        (returned["reference"], returned["amount_minor"])
    ]
    assert returned["reference"] in journal
    # Only the deliberate balance break makes the file inconsistent, by exactly its amount.
    total = sum(x.signed_minor - x.fee_minor for x in parsed.lines)
    assert (
        parsed.closing_minor - (parsed.opening_minor + total)
        == answers["balance_broken"]["amount_minor"]
    )

    # The return was a real booking: the next statement of the day still has it, balanced.
    after = await statement(
        http, banksim, {"bank": "discbank", "business_date": day, "currency": "EUR"}
    )
    again = read(after["files"][0])
    assert again.balanced
    assert [x.reference for x in again.lines if x.kind == "return"] == [returned["reference"]]
    assert again.closing_minor == clean.closing_minor + returned["amount_minor"]


async def test_a_statement_request_that_cannot_be_honoured_writes_and_books_nothing(
    banksim: ServiceProcess, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    reference = f"att_{uuid.uuid4().hex[:10]}"
    await pay(http, banksim, "csvbank", reference)
    day = (await value_dates(http, banksim, "csvbank"))[reference]["value_date"]
    inbox = Path(banksim.env["RECON_DROP_DIR"]) / "csvbank" / "inbox"
    files_before = sorted(p.name for p in inbox.glob("*")) if inbox.exists() else []
    cases = [
        ({"kind": "drop_line", "reference": "att_nothere"}, "no_line_for_discrepancy"),
        ({"kind": "amount_changed", "reference": "att_nothere"}, "no_line_for_discrepancy"),
    ]
    for bad, code in cases:
        problem = await statement(
            http,
            banksim,
            {
                "bank": "csvbank",
                "business_date": day,
                "currency": "EUR",
                # A valid return first: it must not be booked when a later injection fails.
                "discrepancies": [{"kind": "returned_payout", "reference": reference}, bad],
            },
            expect=422,
        )
        assert problem["code"] == code
    files_after = sorted(p.name for p in inbox.glob("*")) if inbox.exists() else []
    assert files_after == files_before
    result = await statement(
        http, banksim, {"bank": "csvbank", "business_date": day, "currency": "EUR"}
    )
    assert not [x for x in read(result["files"][0]).lines if x.kind == "return"]
