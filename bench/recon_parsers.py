"""Statement parse throughput: generated MT940, camt.053, BAI2 and CSV files through the parsers.

Run: ``.venv/bin/python bench/recon_parsers.py [--lines N] [--repeat R]``. The reconciliation
bench (bench/recon.py) calls :func:`measure` and prints its rows. Each run checks that the
parsed lines add up (count, sum of amounts, every reference present) before reporting a speed,
so a parser that got faster by dropping lines fails loudly instead.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.recon.domain.lines import Direction, Statement
from services.recon.parsers import parse
from services.recon.parsers.amounts import from_minor

TARGET_LINES_PER_S = 100_000


@dataclass(frozen=True)
class Generated:
    format: str
    data: bytes
    lines: int
    net_minor: int  # credits - debits, what the parsed lines must add up to


def _lines(n: int, seed: int) -> list[tuple[date, Direction, int, str]]:
    rng = random.Random(seed)
    start = date(2026, 11, 20)
    return [
        (
            start + timedelta(days=i % 3),
            Direction.DEBIT if rng.random() < 0.9 else Direction.CREDIT,
            rng.randrange(1, 5_000_000),
            f"att_{i:012d}",
        )
        for i in range(n)
    ]


def generate_mt940(n_lines: int, *, per_statement: int = 1000, seed: int = 7) -> Generated:
    """An MT940 file of ``n_lines`` ``:61:`` lines with ``:86:`` details, in EUR."""
    out: list[str] = []
    balance = 10**12
    net = 0
    rows = _lines(n_lines, seed)
    for s in range(0, n_lines, per_statement):
        chunk = rows[s : s + per_statement]
        day = chunk[0][0]
        out.append(f":20:BENCH{s // per_statement:08d}\r\n:25:NL91ABNA0417164300\r\n")
        out.append(f":28C:{s // per_statement + 1}/1\r\n")
        out.append(f":60F:C{day:%y%m%d}EUR{from_minor(balance, 'EUR', separator=',')}\r\n")
        for i, (booked, direction, amount, ref) in enumerate(chunk):
            mark = "D" if direction is Direction.DEBIT else "C"
            signed = -amount if direction is Direction.DEBIT else amount
            balance += signed
            net += signed
            out.append(
                f":61:{booked:%y%m%d}{booked:%m%d}{mark}{from_minor(amount, 'EUR', separator=',')}"
                f"NTRF{ref}//B{s + i:015d}\r\n"
                f":86:166?00SEPA UEBERWEISUNG?20EREF+{ref}?21SVWZ+payout {ref}"
                f"?32BENEFICIARY {i % 977}\r\n"
            )
        out.append(f":62F:C{day:%y%m%d}EUR{from_minor(balance, 'EUR', separator=',')}\r\n-\r\n")
    return Generated("mt940", "".join(out).encode(), n_lines, net)


def generate_camt053(n_entries: int, *, per_statement: int = 10_000, seed: int = 7) -> Generated:
    """A camt.053.001.08 document with ``n_entries`` ``<Ntry>`` (one transaction each), EUR."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08">\n<BkToCstmrStmt>\n'
        "<GrpHdr><MsgId>BENCH</MsgId><CreDtTm>2026-11-22T06:00:00Z</CreDtTm></GrpHdr>\n"
    ]
    balance = 10**12
    net = 0
    rows = _lines(n_entries, seed)
    for s in range(0, n_entries, per_statement):
        chunk = rows[s : s + per_statement]
        out.append(
            f"<Stmt><Id>BENCH{s // per_statement:08d}</Id>"
            f"<ElctrncSeqNb>{s // per_statement + 1}</ElctrncSeqNb>\n"
            "<Acct><Id><IBAN>NL91ABNA0417164300</IBAN></Id><Ccy>EUR</Ccy></Acct>\n"
            f"<Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp>"
            f'<Amt Ccy="EUR">{from_minor(balance, "EUR")}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
            f"<Dt><Dt>{chunk[0][0]}</Dt></Dt></Bal>\n"
        )
        entries = []
        for i, (booked, direction, amount, ref) in enumerate(chunk):
            signed = -amount if direction is Direction.DEBIT else amount
            balance += signed
            net += signed
            indicator = "DBIT" if direction is Direction.DEBIT else "CRDT"
            party = "Cdtr" if direction is Direction.DEBIT else "Dbtr"
            entries.append(
                f'<Ntry><Amt Ccy="EUR">{from_minor(amount, "EUR")}</Amt>'
                f"<CdtDbtInd>{indicator}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
                f"<BookgDt><Dt>{booked}</Dt></BookgDt><ValDt><Dt>{booked}</Dt></ValDt>"
                f"<AcctSvcrRef>B{s + i:015d}</AcctSvcrRef>"
                "<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>ESCT</SubFmlyCd>"
                "</Fmly></Domn></BkTxCd>"
                f"<NtryDtls><TxDtls><Refs><EndToEndId>{ref}</EndToEndId></Refs>"
                f"<RltdPties><{party}><Pty><Nm>BENEFICIARY {i % 977}</Nm></Pty></{party}>"
                f"</RltdPties></TxDtls></NtryDtls></Ntry>\n"
            )
        out.extend(entries)
        out.append(
            f"<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp>"
            f'<Amt Ccy="EUR">{from_minor(balance, "EUR")}</Amt><CdtDbtInd>CRDT</CdtDbtInd>'
            f"<Dt><Dt>{chunk[-1][0]}</Dt></Dt></Bal></Stmt>\n"
        )
    out.append("</BkToCstmrStmt>\n</Document>\n")
    return Generated("camt053", "".join(out).encode(), n_entries, net)


def generate_csv(n_lines: int, *, seed: int = 7) -> Generated:
    """A CSV statement in the default mapping's layout (docs in services/recon/parsers)."""
    out = ["date,value_date,amount,currency,direction,reference,bank_reference,fee,counterparty\n"]
    net = 0
    for i, (booked, direction, amount, ref) in enumerate(_lines(n_lines, seed)):
        net += -amount if direction is Direction.DEBIT else amount
        out.append(
            f"{booked},{booked},{from_minor(amount, 'EUR')},EUR,{direction.value},{ref},"
            f"B{i:015d},0.00,BENEFICIARY {i % 977}\n"
        )
    return Generated("csv", "".join(out).encode(), n_lines, net)


def _check(result: list[Statement], generated: Generated) -> None:
    lines = [line for statement in result for line in statement.lines]
    assert len(lines) == generated.lines, (len(lines), generated.lines)
    net = sum(
        -ln.amount_minor if ln.direction is Direction.DEBIT else ln.amount_minor for ln in lines
    )
    assert net == generated.net_minor, (net, generated.net_minor)
    assert all(ln.our_reference and ln.our_reference.startswith("att_") for ln in lines)


def _baseline_mt940_library(data: bytes) -> int:
    """The ``mt-940`` PyPI library on the same file (what we chose not to use)."""
    import mt940 as library

    transactions = library.models.Transactions()
    transactions.parse(data.decode("latin-1"))
    return len(transactions.transactions)


def _baseline_lxml_bare(data: bytes) -> int:
    """libxml2 reading every element and dropping each entry: the floor for any lxml parser."""
    import io

    from lxml import etree

    count = 0
    tag = "{urn:iso:std:iso:20022:tech:xsd:camt.053.001.08}Ntry"
    for _event, elem in etree.iterparse(io.BytesIO(data), events=("end",), tag=tag):
        count += 1
        elem.getparent().remove(elem)
    return count


def _baseline_stdlib_xml(data: bytes) -> int:
    """The stdlib (expat) ElementTree pull parser doing nothing with the entries."""
    import io
    import xml.etree.ElementTree as ET

    count = 0
    for _event, elem in ET.iterparse(io.BytesIO(data), events=("end",)):
        if elem.tag.endswith("}Ntry"):
            count += 1
            elem.clear()
    return count


def _baseline_csv_reader(data: bytes) -> int:
    import csv

    return sum(1 for _ in csv.reader(data.decode().split("\n")[1:-1]))


BASELINES: dict[str, list[tuple[str, Callable[[bytes], int]]]] = {
    "mt940": [("mt-940 library", _baseline_mt940_library)],
    "camt053": [
        ("lxml iterparse, no work", _baseline_lxml_bare),
        ("stdlib iterparse, no work", _baseline_stdlib_xml),
    ],
    "csv": [("csv.reader, no work", _baseline_csv_reader)],
}


def _best_cpu(work: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def measure(
    n_lines: int = 200_000, *, repeat: int = 3, baselines: bool = False
) -> list[dict[str, object]]:
    """Best-of-``repeat`` parse throughput per format; every run is checked for correctness."""
    generators: list[Callable[[int], Generated]] = [generate_mt940, generate_camt053, generate_csv]
    rows: list[dict[str, object]] = []
    for generate in generators:
        generated = generate(n_lines)
        best = best_cpu = float("inf")
        for _ in range(repeat):
            gc.collect()
            started, started_cpu = time.perf_counter(), time.process_time()
            result = parse(generated.data, channel="bench", format=generated.format)
            elapsed = time.perf_counter() - started
            elapsed_cpu = time.process_time() - started_cpu
            _check(result, generated)
            best, best_cpu = min(best, elapsed), min(best_cpu, elapsed_cpu)
            del result
        measured_baselines = {}
        if baselines:
            for name, baseline in BASELINES[generated.format]:
                seconds = _best_cpu(partial(baseline, generated.data), min(repeat, 2))
                measured_baselines[name] = int(generated.lines / seconds)
        rows.append(
            {
                "baselines_lines_per_cpu_s": measured_baselines,
                "format": generated.format,
                "lines": generated.lines,
                "megabytes": round(len(generated.data) / 1e6, 1),
                "seconds": round(best, 3),
                "cpu_seconds": round(best_cpu, 3),
                "lines_per_s": int(generated.lines / best),
                "lines_per_cpu_s": int(generated.lines / best_cpu),
                "target_lines_per_s": TARGET_LINES_PER_S,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(
        f"statement parsing, {args.lines:,} lines per format, best of {args.repeat}, "
        f"{os.cpu_count()} CPUs, load {load:.1f}, Python {sys.version.split()[0]}"
    )
    for row in measure(args.lines, repeat=args.repeat, baselines=not args.no_baselines):
        # CPU time is the verdict: on a shared machine wall time also counts other processes.
        cpu_rate = int(str(row["lines_per_cpu_s"]))
        verdict = "ok" if cpu_rate >= TARGET_LINES_PER_S else "BELOW TARGET"
        print(
            f"  {row['format']:<8} {row['lines']:>9,} lines {row['megabytes']:>7} MB "
            f"{row['seconds']:>7} s {row['lines_per_s']:>10,} lines/s "
            f"(CPU {row['cpu_seconds']} s, {row['lines_per_cpu_s']:,} lines/CPU-s)  {verdict}"
        )
        baselines: dict[str, int] = row["baselines_lines_per_cpu_s"]  # type: ignore[assignment]
        for name, rate in baselines.items():
            print(
                f"           baseline {name:<28} {rate:>10,} lines/CPU-s ({cpu_rate / rate:.2f}x)"
            )


if __name__ == "__main__":
    main()
