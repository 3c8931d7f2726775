"""Set-based matching of statement lines against our records, on an embedded DuckDB.

Why DuckDB (measured in bench/recon.py, docs/PERFORMANCE.md): on the 1M x 1M join it is as
fast as polars on this machine, it expresses the passes as plain SQL, it spills to disk under
a memory limit (so 10M lines do not need 10x the memory), and it writes the run's matches as
Parquet and its breaks as the CSV that PostgreSQL's COPY reads, without a detour through Python
objects.

The engine is pure computation: it reads the two inputs it is given (table expressions over
columnar files), never touches our databases, and leaves its results in tables of the same
DuckDB connection for the caller to persist.

Every statement line and every record of the run's universe ends with exactly ONE outcome:

    line:   match (by a pass) | break (one code)
    record: match (by a pass) | break (one code) | resolved (unknown, absent after T+N: failed)
            | agreed (we recorded failed and the bank agrees: nothing booked)

The passes run in the channel's configured order, each over what the previous ones left:

1. ``our_reference``  the reference we sent (att_…) echoed by the bank (or end-to-end id);
2. ``bank_reference`` the bank's own reference, when our record knows it;
3. ``amount_date``    same currency and amount, value date within [created, created + N];
4. ``one_to_many``    one batch-settlement line = the sum of a group of our records;
5. ``fee_adjusted``   the line is gross where we expect net (or the reverse).

A candidate set that is not one-to-one is never matched: the line becomes an
``ambiguous_match`` break listing its candidates, and the records stay unmatched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from services.recon.domain.rules import ChannelRules
from services.recon.domain.taxonomy import BREAK_SEVERITY, BreakCode

LINE_COLUMNS = (
    "channel",
    "statement_id",
    "line_number",
    "booking_date",
    "value_date",
    "direction",
    "amount_minor",
    "currency",
    "fee_minor",
    "our_reference",
    "bank_reference",
    "end_to_end_id",
    "counterparty",
    "raw",
)
RECORD_COLUMNS = (
    "attempt_id",
    "payout_id",
    "bank",
    "channel_id",
    "amount_minor",
    "currency",
    "fee_minor",
    "status",
    "created_at",
    "resolved_at",
    "bank_reference",
    "executed_at",
)

# Router attempt statuses folded into the four that matter here.
_STATUS = """CASE lower(status)
    WHEN 'succeeded' THEN 'succeeded' WHEN 'paid' THEN 'succeeded'
    WHEN 'failed' THEN 'failed' WHEN 'rejected' THEN 'failed'
    WHEN 'unknown' THEN 'unknown'
    ELSE 'submitted' END"""

AMBIGUOUS_CANDIDATES_SHOWN = 10


@dataclass(frozen=True)
class MatchInputs:
    lines_sql: str  # a DuckDB table expression with LINE_COLUMNS
    records_sql: str  # a DuckDB table expression with RECORD_COLUMNS
    business_date: date
    rules: ChannelRules


@dataclass(frozen=True)
class MatchSummary:
    line_count: int
    record_count: int  # records in the run's universe (unsettled, from the export window)
    passes: dict[str, dict[str, int]]  # pass -> {lines, records, amount_minor}
    breaks: dict[str, dict[str, int]]  # code -> {count, amount_minor}
    resolutions: dict[str, int]  # outcome -> count
    agreed_count: int

    @property
    def matched_lines(self) -> int:
        return sum(p["lines"] for p in self.passes.values())

    @property
    def break_count(self) -> int:
        return sum(b["count"] for b in self.breaks.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "line_count": self.line_count,
            "record_count": self.record_count,
            "matched_lines": self.matched_lines,
            "break_count": self.break_count,
            "passes": self.passes,
            "breaks": self.breaks,
            "resolutions": self.resolutions,
            "agreed_count": self.agreed_count,
        }


def connect(*, threads: int = 2, memory_limit_mb: int = 1024, temp_dir: str | None = None) -> Any:
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads)}")
    con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
    con.execute("SET preserve_insertion_order = false")
    if temp_dir:
        con.execute("SET temp_directory = ?", [temp_dir])
    return con


class Engine:
    def __init__(self, con: Any) -> None:
        self.con = con

    def _x(self, sql: str, params: list[Any] | None = None) -> Any:
        return self.con.execute(sql, params or [])

    def run(self, inputs: MatchInputs, settled: list[str] | None = None) -> MatchSummary:
        """Load and match in one go (``settled``: attempts settled by earlier runs)."""
        self.load(inputs)
        return self.match(inputs, settled or [])

    def carry(self, keys: list[tuple[str, int]]) -> None:
        """Lines of earlier statements carried into this run (their timing break is open):
        ``carried_lines_sql`` selects them from their files by these keys."""
        self._x("CREATE OR REPLACE TEMP TABLE carried_keys (statement_id VARCHAR, line_number INT)")
        if keys:
            self._x(
                """INSERT INTO carried_keys SELECT unnest(?::VARCHAR[]), unnest(?::INT[])""",
                [[k[0] for k in keys], [k[1] for k in keys]],
            )

    def earlier_attempt_ids(self) -> list[str]:
        """Records created before the business day: the only ones an earlier run may have
        settled, and the only ones that may carry a timing break from an earlier day."""
        return [
            row[0]
            for row in self._x(
                "SELECT attempt_id FROM r WHERE record_date < ? ORDER BY attempt_id",
                [self._business_date],
            ).fetchall()
        ]

    def match(
        self, inputs: MatchInputs, settled: list[str], earlier_matches: Sequence[Path] = ()
    ) -> MatchSummary:
        """``settled``: attempts an earlier run already settled; a line for one of them is a
        duplicate, and they are not expected on this statement. ``earlier_matches``: the
        matches files (Parquet) of the current runs of earlier days; their attempts are
        settled too."""
        rules = inputs.rules
        if earlier_matches:
            files = ", ".join(_literal(str(p)) for p in earlier_matches)
            self._x(
                f"""UPDATE r SET settled = true WHERE record_date < ? AND attempt_id IN (
                      SELECT attempt_id FROM read_parquet([{files}]))""",
                [self._business_date],
            )
        if settled:
            self._x(
                "CREATE OR REPLACE TEMP TABLE settled AS SELECT unnest(?::VARCHAR[]) AS attempt_id",
                [settled],
            )
            self._x(
                "UPDATE r SET settled = true WHERE attempt_id IN (SELECT attempt_id FROM settled)"
            )
        self._returns()
        for name in rules.passes:
            getattr(self, f"_pass_{name}")(rules)
        self._residual(inputs)
        return self._summary()

    # -- inputs ---------------------------------------------------------------------------

    def load(self, inputs: MatchInputs) -> None:
        rules = inputs.rules
        self._business_date = inputs.business_date
        gross = rules.amount_basis == "gross"
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE l AS
            SELECT row_number() OVER (ORDER BY statement_id, line_number) AS line_key,
                   statement_id, CAST(line_number AS INTEGER) AS line_number,
                   CAST(booking_date AS DATE) AS booking_date,
                   CAST(value_date AS DATE) AS value_date, direction,
                   CAST(amount_minor AS BIGINT) AS amount_minor, currency,
                   CAST(fee_minor AS BIGINT) AS fee_minor,
                   coalesce(our_reference, end_to_end_id) AS ref,
                   bank_reference, raw,
                   CAST(amount_minor AS BIGINT)
                     - {"CAST(fee_minor AS BIGINT)" if gross else "0"} AS principal_minor
            FROM ({inputs.lines_sql}) src"""
        )
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE r AS
            SELECT attempt_id, payout_id, channel_id,
                   CAST(amount_minor AS BIGINT) AS amount_minor, currency,
                   CAST(fee_minor AS BIGINT) AS fee_minor, {_STATUS} AS status,
                   CAST(coalesce(CAST(executed_at AS TIMESTAMPTZ), CAST(created_at AS TIMESTAMPTZ))
                        AT TIME ZONE 'UTC' AS DATE) AS record_date,
                   CAST(bank_reference AS VARCHAR) AS bank_reference,
                   false AS settled
            FROM ({inputs.records_sql}) src"""
        )
        dupes = self._x("SELECT count(*) - count(DISTINCT attempt_id) FROM r").fetchone()[0]
        assert dupes == 0, f"the records export repeats {dupes} attempt id(s)"
        self._x(
            """CREATE OR REPLACE TEMP TABLE lo
               (line_key BIGINT, kind VARCHAR, code VARCHAR, attempt_id VARCHAR)"""
        )
        self._x("CREATE OR REPLACE TEMP TABLE ro (attempt_id VARCHAR, kind VARCHAR, code VARCHAR)")
        self._x(
            "CREATE OR REPLACE TEMP TABLE m (line_key BIGINT, attempt_id VARCHAR, pass VARCHAR)"
        )
        self._x(
            """CREATE OR REPLACE TEMP TABLE b
               (code VARCHAR, line_key BIGINT, attempt_id VARCHAR, detail VARCHAR)"""
        )
        self._x("CREATE OR REPLACE TEMP TABLE amb (line_key BIGINT, attempt_id VARCHAR)")
        self._x(
            """CREATE OR REPLACE TEMP TABLE res
               (attempt_id VARCHAR, outcome VARCHAR, line_key BIGINT)"""
        )

    # Open lines (debits not yet given an outcome) and open records (the run's universe).
    _OPEN_LINES = "(SELECT * FROM l ANTI JOIN lo USING (line_key) WHERE l.direction = 'debit')"
    _OPEN_RECORDS = "(SELECT * FROM r ANTI JOIN ro USING (attempt_id) WHERE NOT r.settled)"

    # -- passes ---------------------------------------------------------------------------

    def _returns(self) -> None:
        """A credit that references one of our attempts is the bank returning a payout."""
        self._x(
            """CREATE OR REPLACE TEMP TABLE ret AS
               SELECT l.line_key, r.attempt_id, r.status FROM l JOIN r ON r.attempt_id = l.ref
               WHERE l.direction = 'credit'"""
        )
        self._x("INSERT INTO lo SELECT line_key, 'break', 'returned', attempt_id FROM ret")
        self._x("INSERT INTO b SELECT 'returned', line_key, attempt_id, NULL FROM ret")
        self._x(
            """INSERT INTO res SELECT attempt_id, 'returned', min(line_key) FROM ret
               WHERE status <> 'failed' GROUP BY attempt_id"""
        )

    def _pass_our_reference(self, rules: ChannelRules) -> None:
        # Every open debit line naming one of our attempts; the first line per attempt is
        # the candidate, the others are duplicates, as is a line for an attempt an earlier
        # run already settled.
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE c AS
            SELECT l.line_key, r.attempt_id, r.settled,
                   r.attempt_id IN (SELECT attempt_id FROM ro) AS taken,
                   row_number() OVER (PARTITION BY r.attempt_id ORDER BY l.line_key) AS rn
            FROM {self._OPEN_LINES} l JOIN r ON r.attempt_id = l.ref"""
        )
        self._x(
            """CREATE OR REPLACE TEMP TABLE dup AS
               SELECT line_key, attempt_id FROM c WHERE rn > 1 OR settled OR taken"""
        )
        self._x("INSERT INTO lo SELECT line_key, 'break', 'duplicate_at_bank', attempt_id FROM dup")
        self._x("INSERT INTO b SELECT 'duplicate_at_bank', line_key, attempt_id, NULL FROM dup")
        self._x(
            """CREATE OR REPLACE TEMP TABLE pairs AS SELECT line_key, attempt_id FROM c
               WHERE rn = 1 AND NOT settled AND NOT taken"""
        )
        self._settle_pairs("our_reference", rules)

    def _pass_bank_reference(self, rules: ChannelRules) -> None:
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE c AS
            SELECT l.line_key, r.attempt_id FROM {self._OPEN_LINES} l
            JOIN {self._OPEN_RECORDS} r ON r.bank_reference = l.bank_reference
            WHERE l.bank_reference IS NOT NULL"""
        )
        self._unique_pairs()
        self._settle_pairs("bank_reference", rules)

    def _window(self, rules: ChannelRules) -> str:
        n = int(rules.window_days)
        return f"l.value_date BETWEEN r.record_date AND r.record_date + INTERVAL {n} DAY"

    def _pass_amount_date(self, rules: ChannelRules) -> None:
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE c AS
            SELECT l.line_key, r.attempt_id FROM {self._OPEN_LINES} l
            JOIN {self._OPEN_RECORDS} r
              ON r.currency = l.currency AND r.amount_minor = l.principal_minor
            WHERE r.status <> 'failed' AND {self._window(rules)}"""
        )
        self._unique_pairs()
        self._settle_pairs("amount_date", rules)

    def _pass_fee_adjusted(self, rules: ChannelRules) -> None:
        # Equi-joins only (one per way a fee can sit in or out of the amount): a join on the
        # currency alone with the alternatives in a filter would compare every pair.
        ways = (
            "l.amount_minor = r.amount_minor + r.fee_minor",
            "l.amount_minor = r.amount_minor - r.fee_minor",
            "l.amount_minor - l.fee_minor = r.amount_minor",
            "l.amount_minor = r.amount_minor",
        )
        union = " UNION ".join(
            f"""SELECT l.line_key, r.attempt_id FROM {self._OPEN_LINES} l
                JOIN {self._OPEN_RECORDS} r ON r.currency = l.currency AND {way}
                WHERE r.status <> 'failed' AND coalesce(r.fee_minor, 0) > 0
                  AND {self._window(rules)}"""
            for way in ways
        )
        self._x(f"CREATE OR REPLACE TEMP TABLE c AS {union}")
        self._unique_pairs()
        # Any pair found here is a match on the fee-adjusted basis by construction.
        self._x("INSERT INTO m SELECT line_key, attempt_id, 'fee_adjusted' FROM pairs")
        self._x("INSERT INTO lo SELECT line_key, 'match', 'fee_adjusted', attempt_id FROM pairs")
        self._x("INSERT INTO ro SELECT attempt_id, 'match', 'fee_adjusted' FROM pairs")
        self._resolve_matched()

    def _pass_one_to_many(self, rules: ChannelRules) -> None:
        keys = [
            {"currency": "currency", "record_date": "record_date", "channel_id": "channel_id"}[k]
            for k in rules.one_to_many_group_by
        ]
        group = ", ".join(keys) if keys else "currency"
        n = int(rules.window_days)
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE g AS
            SELECT row_number() OVER (ORDER BY min(attempt_id)) AS group_key,
                   any_value(currency) AS currency, sum(amount_minor) AS total_minor,
                   min(record_date) AS first_date, max(record_date) AS last_date,
                   count(DISTINCT currency) AS currencies, list(attempt_id) AS members
            FROM {self._OPEN_RECORDS} r WHERE r.status <> 'failed'
            GROUP BY {group} HAVING count(*) >= 2"""
        )
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE gc AS
            SELECT l.line_key, g.group_key FROM {self._OPEN_LINES} l JOIN g
              ON g.currency = l.currency AND g.total_minor = l.principal_minor
            WHERE g.currencies = 1
              AND l.value_date BETWEEN g.last_date AND g.first_date + INTERVAL {n} DAY"""
        )
        self._x(
            """CREATE OR REPLACE TEMP TABLE gp AS
            SELECT line_key, group_key FROM gc
            QUALIFY count(*) OVER (PARTITION BY line_key) = 1
                AND count(*) OVER (PARTITION BY group_key) = 1"""
        )
        self._x(
            """INSERT INTO amb SELECT gc.line_key, 'group:' || array_to_string(g.members, ',')
               FROM gc JOIN g USING (group_key) ANTI JOIN gp USING (line_key)"""
        )
        self._x(
            """CREATE OR REPLACE TEMP TABLE pairs AS
            SELECT gp.line_key, unnest(g.members) AS attempt_id FROM gp JOIN g USING (group_key)"""
        )
        self._x("INSERT INTO m SELECT line_key, attempt_id, 'one_to_many' FROM pairs")
        self._x("""INSERT INTO lo SELECT line_key, 'match', 'one_to_many', NULL FROM gp""")
        self._x("INSERT INTO ro SELECT attempt_id, 'match', 'one_to_many' FROM pairs")
        self._resolve_matched()

    def _unique_pairs(self) -> None:
        """Keep one-to-one candidates only; remember the rest as ambiguity evidence."""
        self._x(
            """CREATE OR REPLACE TEMP TABLE pairs AS
            SELECT line_key, attempt_id FROM c
            QUALIFY count(*) OVER (PARTITION BY line_key) = 1
                AND count(*) OVER (PARTITION BY attempt_id) = 1"""
        )
        self._x(
            "INSERT INTO amb SELECT line_key, attempt_id FROM c ANTI JOIN pairs USING (line_key)"
        )

    def _settle_pairs(self, pass_name: str, rules: ChannelRules) -> None:
        """Give each (line, record) pair found by reference its verdict: match or a break."""
        check_fees = "true" if rules.check_fees else "false"
        fee_adjusted = "true" if "fee_adjusted" in rules.passes else "false"
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE ev AS
            SELECT p.line_key, p.attempt_id,
              CASE
                WHEN r.status = 'failed' THEN 'status_mismatch'
                WHEN l.value_date > DATE '{self._business_date.isoformat()}' THEN 'timing'
                WHEN l.currency <> r.currency THEN 'amount_mismatch'
                WHEN l.principal_minor = r.amount_minor THEN
                  CASE WHEN {check_fees} AND r.fee_minor IS NOT NULL
                            AND l.fee_minor <> r.fee_minor
                       THEN 'fee_mismatch' ELSE 'match' END
                WHEN {fee_adjusted} AND coalesce(r.fee_minor, 0) > 0
                     AND (l.amount_minor = r.amount_minor + r.fee_minor
                          OR l.amount_minor = r.amount_minor - r.fee_minor
                          OR l.amount_minor - l.fee_minor = r.amount_minor
                          OR l.amount_minor = r.amount_minor)
                  THEN 'match_fee_adjusted'
                ELSE 'amount_mismatch'
              END AS verdict
            FROM pairs p JOIN l USING (line_key) JOIN r USING (attempt_id)"""
        )
        self._x(
            f"""INSERT INTO m SELECT line_key, attempt_id,
                 CASE verdict WHEN 'match' THEN '{pass_name}' ELSE 'fee_adjusted' END
               FROM ev WHERE verdict LIKE 'match%'"""
        )
        self._x(
            f"""INSERT INTO lo SELECT line_key,
                 CASE WHEN verdict LIKE 'match%' THEN 'match' ELSE 'break' END,
                 CASE verdict WHEN 'match' THEN '{pass_name}'
                   WHEN 'match_fee_adjusted' THEN 'fee_adjusted' ELSE verdict END,
                 attempt_id
               FROM ev"""
        )
        self._x(
            f"""INSERT INTO ro SELECT attempt_id,
                 CASE WHEN verdict LIKE 'match%' THEN 'match' ELSE 'break' END,
                 CASE verdict WHEN 'match' THEN '{pass_name}'
                   WHEN 'match_fee_adjusted' THEN 'fee_adjusted' ELSE verdict END
               FROM ev"""
        )
        self._x(
            """INSERT INTO b SELECT verdict, line_key, attempt_id, NULL FROM ev
               WHERE verdict NOT LIKE 'match%'"""
        )
        self._resolve_matched()

    def _resolve_matched(self) -> None:
        """A matched payout whose outcome we did not know was executed: paid."""
        self._x(
            """INSERT INTO res SELECT r.attempt_id, 'paid', min(p.line_key) FROM pairs p
               JOIN r USING (attempt_id) JOIN ro USING (attempt_id)
               WHERE r.status IN ('unknown', 'submitted')
                 AND (ro.kind = 'match' OR ro.code = 'fee_mismatch')
               GROUP BY r.attempt_id"""
        )

    # -- what is left ---------------------------------------------------------------------

    def _residual(self, inputs: MatchInputs) -> None:
        shown = AMBIGUOUS_CANDIDATES_SHOWN
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE ambl AS
            SELECT line_key,
                   array_to_string(list_sort(list_distinct(list(attempt_id)))[1:{shown}], ',')
                     AS candidates
            FROM amb GROUP BY line_key"""
        )
        self._x(
            """CREATE OR REPLACE TEMP TABLE left_lines AS
            SELECT x.line_key, a.candidates
            FROM (SELECT line_key FROM l ANTI JOIN lo USING (line_key)) x
            LEFT JOIN ambl a USING (line_key)"""
        )
        self._x(
            """INSERT INTO lo SELECT line_key, 'break',
                 CASE WHEN candidates IS NULL THEN 'missing_in_ledger'
                      ELSE 'ambiguous_match' END, NULL
               FROM left_lines"""
        )
        self._x(
            """INSERT INTO b SELECT
                 CASE WHEN candidates IS NULL THEN 'missing_in_ledger'
                      ELSE 'ambiguous_match' END,
                 line_key, NULL,
                 CASE WHEN candidates IS NULL THEN NULL ELSE 'candidates: ' || candidates END
               FROM left_lines"""
        )
        d = inputs.business_date.isoformat()
        n = int(inputs.rules.window_days)
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE left_records AS
            SELECT r.attempt_id,
              CASE
                WHEN r.status = 'failed' THEN 'agreed'
                WHEN r.record_date + INTERVAL {n} DAY > DATE '{d}' THEN 'timing'
                WHEN r.status = 'unknown' THEN 'resolved'
                ELSE 'missing_at_bank'
              END AS verdict
            FROM {self._OPEN_RECORDS} r"""
        )
        self._x(
            """INSERT INTO ro SELECT attempt_id,
                 CASE WHEN verdict IN ('agreed', 'resolved') THEN verdict ELSE 'break' END,
                 verdict
               FROM left_records"""
        )
        self._x(
            """INSERT INTO b SELECT verdict, NULL, attempt_id, NULL FROM left_records
               WHERE verdict IN ('timing', 'missing_at_bank')"""
        )
        self._x(
            """INSERT INTO res SELECT attempt_id, 'failed', NULL FROM left_records
               WHERE verdict = 'resolved'"""
        )

    # -- results --------------------------------------------------------------------------

    def _summary(self) -> MatchSummary:
        line_count = self._x("SELECT count(*) FROM l").fetchone()[0]
        record_count = self._x("SELECT count(*) FROM r WHERE NOT settled").fetchone()[0]
        passes: dict[str, dict[str, int]] = {}
        for name, lines, records, amount in self._x(
            """SELECT pass, count(DISTINCT line_key), count(DISTINCT attempt_id),
                      (SELECT coalesce(sum(l.amount_minor), 0) FROM l
                        WHERE l.line_key IN (SELECT line_key FROM m m2 WHERE m2.pass = m.pass))
               FROM m GROUP BY pass ORDER BY pass"""
        ).fetchall():
            passes[name] = {"lines": lines, "records": records, "amount_minor": int(amount)}
        breaks: dict[str, dict[str, int]] = {}
        for code, count, amount in self._x(
            """SELECT b.code, count(*),
                      coalesce(sum(coalesce(l.amount_minor, r.amount_minor)), 0)
               FROM b LEFT JOIN l USING (line_key) LEFT JOIN r USING (attempt_id)
               GROUP BY b.code ORDER BY b.code"""
        ).fetchall():
            assert code in BREAK_SEVERITY, f"unknown break code {code}"
            breaks[code] = {"count": count, "amount_minor": int(amount)}
        resolutions = {
            outcome: count
            for outcome, count in self._x(
                "SELECT outcome, count(*) FROM res GROUP BY outcome ORDER BY outcome"
            ).fetchall()
        }
        agreed = self._x("SELECT count(*) FROM ro WHERE kind = 'agreed'").fetchone()[0]
        self._assert_accounted(line_count, record_count)
        return MatchSummary(
            line_count=line_count,
            record_count=record_count,
            passes=passes,
            breaks=breaks,
            resolutions=resolutions,
            agreed_count=agreed,
        )

    def _assert_accounted(self, line_count: int, record_count: int) -> None:
        """Invariant: every line and every open record has exactly one outcome."""
        lines_once = self._x("SELECT count(*), count(DISTINCT line_key) FROM lo").fetchone()
        assert lines_once == (line_count, line_count), f"line outcomes {lines_once} != {line_count}"
        records_once = self._x("SELECT count(*), count(DISTINCT attempt_id) FROM ro").fetchone()
        assert records_once == (record_count, record_count), (
            f"record outcomes {records_once} != {record_count}"
        )

    def line_outcomes(self) -> list[tuple[str, int, str, str]]:
        """(statement_id, line_number, kind, code) per line, for reports and tests."""
        rows = self._x(
            """SELECT l.statement_id, l.line_number, lo.kind, lo.code
               FROM lo JOIN l USING (line_key) ORDER BY l.statement_id, l.line_number"""
        ).fetchall()
        return [(s, n, k, c) for s, n, k, c in rows]

    def record_outcomes(self) -> list[tuple[str, str, str]]:
        return [
            (a, k, c)
            for a, k, c in self._x(
                "SELECT attempt_id, kind, code FROM ro ORDER BY attempt_id"
            ).fetchall()
        ]

    def resolutions(self) -> list[tuple[Any, ...]]:
        """(attempt_id, payout_id, outcome, amount_minor, currency, statement_id, line_number)"""
        rows = self._x(
            """SELECT res.attempt_id, r.payout_id, res.outcome,
                      coalesce(l.amount_minor, r.amount_minor), r.currency,
                      l.statement_id, l.line_number
               FROM res JOIN r USING (attempt_id) LEFT JOIN l USING (line_key)
               ORDER BY res.attempt_id, res.outcome"""
        ).fetchall()
        return [tuple(row) for row in rows]

    def export(
        self,
        run_id: str,
        channel: str,
        business_date: date,
        matches_parquet: Any,
        breaks_csv: Any,
        report_dir: Any,
    ) -> None:
        """Write the run's matches as Parquet (one row per matched line and record, with the
        line's figures, in (statement_id, line_number, attempt_id) order: what the reports
        read), the breaks as CSV in the column order of the table they are COPYed into, and a
        breaks report (with the bank's raw line) for people."""
        run = _literal(run_id)
        severity = " ".join(
            f"WHEN {_literal(code)} THEN {_literal(sev.value)}"
            for code, sev in BREAK_SEVERITY.items()
        )
        suffix = run_id.removeprefix("run_")
        self._x(
            f"""COPY (SELECT l.statement_id, l.line_number, m.attempt_id, m.pass,
                             l.booking_date, l.value_date, l.currency, l.amount_minor,
                             l.fee_minor, l.bank_reference
                      FROM m JOIN l USING (line_key)
                      ORDER BY l.line_key, m.attempt_id)
                TO {_literal(str(matches_parquet))}
                (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)"""
        )
        self._x(
            f"""CREATE OR REPLACE TEMP TABLE bx AS
            SELECT 'brk_{suffix}_' || lpad(CAST(seq AS VARCHAR), 8, '0') AS break_id,
                   {run} AS run_id, {_literal(channel)} AS channel,
                   DATE '{business_date.isoformat()}' AS business_date, code,
                   CASE code {severity} END AS severity,
                   statement_id, line_number, attempt_id, payout_id, amount_minor,
                   expected_amount_minor, currency, fee_minor, expected_fee_minor,
                   value_date, record_date, detail, raw
            FROM ({self.BREAKS_SQL}) x"""
        )
        self._x(
            f"""COPY (SELECT * EXCLUDE (raw) FROM bx)
                TO {_literal(str(breaks_csv))} (FORMAT csv, HEADER false)"""
        )
        report = f"{report_dir}/breaks.csv"
        self._x(
            f"""COPY (SELECT * FROM bx ORDER BY break_id)
                TO {_literal(report)} (FORMAT csv, HEADER true)"""
        )

    # Result projections for persistence (the caller COPYs them out).
    BREAKS_SQL = """SELECT row_number() OVER (ORDER BY b.code, b.line_key, b.attempt_id) AS seq,
                       b.code, l.statement_id, l.line_number, b.attempt_id, r.payout_id,
                       coalesce(l.amount_minor, r.amount_minor) AS amount_minor,
                       r.amount_minor AS expected_amount_minor,
                       coalesce(l.currency, r.currency) AS currency,
                       l.fee_minor, r.fee_minor AS expected_fee_minor,
                       l.value_date, r.record_date, b.detail, l.raw
                    FROM b LEFT JOIN l USING (line_key) LEFT JOIN r USING (attempt_id)"""


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def break_codes() -> list[str]:
    return [code.value for code in BreakCode]
