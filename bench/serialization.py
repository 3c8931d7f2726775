"""msgspec vs pydantic v2 on the suite's own payload shapes (decode+validate, encode).

Run: ``make bench-serialization``. Both libraries validate the same constraints (strict types,
ranges, patterns, unknown fields forbidden) so the comparison is like for like. The baseline
is the standard library's ``json`` (parse only, no validation) in the same run; ratios are
printed against it.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Annotated, Any

import msgspec
import pydantic

CURRENCY = r"^[A-Z]{3}$"


# --- msgspec models ---------------------------------------------------------------------
class MBeneficiary(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=140)]
    account_number: Annotated[str, msgspec.Meta(min_length=4, max_length=34)]
    bank_code: Annotated[str, msgspec.Meta(min_length=2, max_length=11)]


class MPayoutCreate(msgspec.Struct, forbid_unknown_fields=True):
    amount: Annotated[int, msgspec.Meta(ge=1, le=10**15)]
    currency: Annotated[str, msgspec.Meta(pattern=CURRENCY)]
    beneficiary: MBeneficiary
    reference: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    metadata: dict[str, str] = {}


class MTransfer(msgspec.Struct, forbid_unknown_fields=True):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: Annotated[int, msgspec.Meta(ge=1, le=10**15)]
    currency: Annotated[str, msgspec.Meta(pattern=CURRENCY)]
    code: int = 0


class MBatch(msgspec.Struct, forbid_unknown_fields=True):
    transfers: Annotated[list[MTransfer], msgspec.Meta(max_length=8190)]


# --- pydantic models --------------------------------------------------------------------
_strict = pydantic.ConfigDict(strict=True, extra="forbid")


class PBeneficiary(pydantic.BaseModel):
    model_config = _strict
    name: Annotated[str, pydantic.Field(min_length=1, max_length=140)]
    account_number: Annotated[str, pydantic.Field(min_length=4, max_length=34)]
    bank_code: Annotated[str, pydantic.Field(min_length=2, max_length=11)]


class PPayoutCreate(pydantic.BaseModel):
    model_config = _strict
    amount: Annotated[int, pydantic.Field(ge=1, le=10**15)]
    currency: Annotated[str, pydantic.Field(pattern=CURRENCY)]
    beneficiary: PBeneficiary
    reference: Annotated[str, pydantic.Field(min_length=1, max_length=64)]
    metadata: dict[str, str] = {}


class PTransfer(pydantic.BaseModel):
    model_config = _strict
    id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: Annotated[int, pydantic.Field(ge=1, le=10**15)]
    currency: Annotated[str, pydantic.Field(pattern=CURRENCY)]
    code: int = 0


class PBatch(pydantic.BaseModel):
    model_config = _strict
    transfers: Annotated[list[PTransfer], pydantic.Field(max_length=8190)]


def payloads() -> dict[str, bytes]:
    payout = {
        "amount": 125_00,
        "currency": "EUR",
        "beneficiary": {
            "name": "Ada Lovelace",
            "account_number": "DE89370400440532013000",
            "bank_code": "COBADEFFXXX",
        },
        "reference": "inv-2026-0001",
        "metadata": {"order": "A-1"},
    }
    batch = {
        "transfers": [
            {
                "id": f"tr_{i}",
                "debit_account_id": f"acc_{i % 97}",
                "credit_account_id": "acc_settlement",
                "amount_minor": 1000 + i,
                "currency": "EUR",
                "code": 1,
            }
            for i in range(8190)
        ]
    }
    return {
        "payout_create": json.dumps(payout).encode(),
        "transfer_batch_8190": json.dumps(batch).encode(),
    }


def per_op_us(fn: Callable[[], Any], *, budget_s: float) -> float:
    """Median of 5 rounds, each as many calls as fit in budget_s / 5."""
    rounds = []
    for _ in range(5):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= budget_s / 5:
                break
        rounds.append(elapsed / n * 1e6)
    return statistics.median(rounds)


def main() -> None:
    data = payloads()
    cases = {
        "payout_create": (MPayoutCreate, PPayoutCreate),
        "transfer_batch_8190": (MBatch, PBatch),
    }
    print(
        f"{'payload':<22}{'operation':<18}{'json (stdlib)':>14}{'msgspec':>12}{'pydantic':>12}"
        f"{'pyd/msgspec':>13}"
    )
    for name, (m_type, p_type) in cases.items():
        raw = data[name]
        m_decoder = msgspec.json.Decoder(m_type, strict=True)
        m_obj = m_decoder.decode(raw)
        p_obj = p_type.model_validate_json(raw)
        assert msgspec.to_builtins(m_obj) == p_obj.model_dump(), "models disagree"
        budget = 1.0 if name == "payout_create" else 3.0
        base_dec = per_op_us(lambda raw=raw: json.loads(raw), budget_s=budget)
        m_dec = per_op_us(lambda d=m_decoder, raw=raw: d.decode(raw), budget_s=budget)
        p_dec = per_op_us(lambda t=p_type, raw=raw: t.model_validate_json(raw), budget_s=budget)
        enc = msgspec.json.Encoder()
        builtins = json.loads(raw)
        base_enc = per_op_us(lambda b=builtins: json.dumps(b).encode(), budget_s=budget)
        m_enc = per_op_us(lambda o=m_obj, e=enc: e.encode(o), budget_s=budget)
        p_enc = per_op_us(lambda o=p_obj: o.model_dump_json(), budget_s=budget)
        for op, base, m, p in (
            ("decode+validate", base_dec, m_dec, p_dec),
            ("encode", base_enc, m_enc, p_enc),
        ):
            print(f"{name:<22}{op:<18}{base:>12.1f}us{m:>10.1f}us{p:>10.1f}us{p / m:>12.1f}x")
    print("\nmsgspec/stdlib ratios below 1.0 mean validation costs less than stdlib parsing alone.")


if __name__ == "__main__":
    main()
