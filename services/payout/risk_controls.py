"""The risk engine inside the payout service (docs/RISK.md §4): rule sets stored and published
through the database and the broker, one in-memory ``Engine`` per instance, warmed at start-up,
swapped atomically when a newer version is published."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from contracts.wire import Envelope
from services.kit import outbox
from services.kit.errors import ProblemError
from services.kit.logging import get_logger
from services.payout import risk
from services.payout.adapters import store

log = get_logger(__name__)

PUBLISHED_EVENT = "risk.ruleset_published"
DRY_RUN_DAYS_MAX = 31
DRY_RUN_CHANGES_MAX = 1_000


def _invalid(exc: risk.RuleSetInvalid) -> ProblemError:
    return ProblemError(
        422,
        "risk_ruleset_invalid",
        "Invalid rule set",
        str(exc),
        errors=[msgspec.to_builtins(p) for p in exc.problems],
    )


def _fmt(content_type: str) -> str:
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        return "yaml"
    if content_type == "application/json":
        return "json"
    raise ProblemError(
        415,
        "unsupported_media_type",
        "Unsupported media type",
        "send the rule set as application/yaml or application/json",
    )


def facts_of(row: asyncpg.Record | dict[str, Any]) -> risk.PayoutFacts:
    return risk.PayoutFacts(
        payout_id=row["id"],
        merchant_id=row["merchant_id"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        beneficiary_account=row["beneficiary_account"],
        beneficiary_bank=row["beneficiary_bank_code"],
        beneficiary_name=row["beneficiary_name"],
        created_at=row["created_at"],
    )


class RiskControls:
    def __init__(self, pool: asyncpg.Pool, limits: risk.RiskLimits | None = None) -> None:
        self.pool = pool
        self.limits = limits or risk.RiskLimits()
        self._engine: risk.Engine | None = None

    @property
    def engine(self) -> risk.Engine:
        assert self._engine is not None, "risk controls not started"
        return self._engine

    async def _compile(self, document: Any, version: int) -> risk.RuleSet:
        loop = asyncio.get_running_loop()
        # Big lists take milliseconds to compile: keep the event loop free.
        return await loop.run_in_executor(
            None, lambda: risk.compile_ruleset(document, version=version, limits=self.limits)
        )

    async def start(self) -> None:
        row = await self.pool.fetchrow(
            "SELECT version, document FROM risk_rulesets WHERE published_at IS NOT NULL"
            " ORDER BY version DESC LIMIT 1"
        )
        assert row is not None, "the migration publishes version 1"
        ruleset = await self._compile(json.loads(row["document"]), row["version"])
        engine = risk.Engine(ruleset, limits=self.limits, review_burst=risk.ReviewBurstPolicy())
        since = datetime.now(UTC) - timedelta(seconds=self.limits.velocity_horizon_s)
        warmed = 0
        async with self.pool.acquire() as conn, conn.transaction():
            batch: list[risk.PayoutFacts] = []
            async for r in conn.cursor(
                """SELECT id, merchant_id, amount_minor, currency, beneficiary_account,
                          beneficiary_bank_code, beneficiary_name, created_at FROM payouts
                   WHERE created_at >= $1 AND (risk_outcome IS NULL OR risk_outcome <> 'block')
                   ORDER BY created_at, id""",
                since,
            ):
                batch.append(facts_of(r))
                if len(batch) >= 1_000:
                    warmed += engine.warm(batch)
                    batch = []
            warmed += engine.warm(batch)
        self._engine = engine
        log.info("risk_engine_started", version=ruleset.version, warmed=warmed)

    # ---- the hot path -------------------------------------------------------------------------

    def evaluate(self, facts: risk.PayoutFacts) -> risk.Decision:
        return self.engine.evaluate(facts)

    def observe(self, facts: risk.PayoutFacts, decision: risk.Decision) -> list[risk.RiskAlert]:
        return self.engine.observe(facts, decision)

    def accepted(self, facts: risk.PayoutFacts, decision: risk.Decision) -> None:
        """After the payout's transaction committed: count it (never a blocked one)."""
        if decision.outcome != "block":
            self.engine.record(facts)

    # ---- keeping every instance on the newest version -----------------------------------------

    async def refresh(self) -> bool:
        """Install the newest published version if it is newer than ours."""
        row = await self.pool.fetchrow(
            "SELECT version, digest, document FROM risk_rulesets WHERE published_at IS NOT NULL"
            " ORDER BY version DESC LIMIT 1"
        )
        if row is None or row["version"] <= self.engine.version:
            return False
        ruleset = await self._compile(json.loads(row["document"]), row["version"])
        if row["digest"] and ruleset.digest != row["digest"]:
            # Never judge payouts by something other than what was validated and published.
            log.error("risk_ruleset_digest_mismatch", version=row["version"])
            return False
        swapped = self.engine.install(ruleset)
        if swapped:
            log.info("risk_ruleset_installed", version=ruleset.version, digest=ruleset.digest)
        return swapped

    async def on_event(self, envelope: Envelope) -> None:
        """Per-instance consumer: a published version, or a payout accepted by any instance."""
        if envelope.event_type == PUBLISHED_EVENT:
            await self.refresh()
            return
        if envelope.event_type == "payout.created":
            row = await self.pool.fetchrow(
                "SELECT * FROM payouts WHERE id = $1", envelope.aggregate_id
            )
            if row is not None and row["risk_outcome"] != "block":
                self.engine.record(facts_of(row))  # idempotent by payout id

    # ---- admin use cases ----------------------------------------------------------------------

    async def validate(self, raw: bytes, content_type: str) -> dict[str, Any]:
        fmt = _fmt(content_type)
        try:
            ruleset = risk.compile_ruleset(raw, version=1, limits=self.limits, fmt=fmt)
        except risk.RuleSetInvalid as exc:
            raise _invalid(exc) from None
        return {"valid": True, "digest": ruleset.digest, "rule_count": ruleset.rule_count}

    async def create(self, raw: bytes, content_type: str, author: str) -> dict[str, Any]:
        fmt = _fmt(content_type)
        try:
            probe = risk.compile_ruleset(raw, version=1, limits=self.limits, fmt=fmt)
        except risk.RuleSetInvalid as exc:
            raise _invalid(exc) from None
        async with self.pool.acquire() as conn, conn.transaction():
            version = await conn.fetchval("SELECT nextval('risk_ruleset_versions')")
            ruleset = await self._compile(probe.document, int(version))
            await conn.execute(
                """INSERT INTO risk_rulesets(version, digest, document, source, author,
                       rule_count) VALUES ($1, $2, $3, $4, $5, $6)""",
                version,
                ruleset.digest,
                json.dumps(ruleset.document),
                raw.decode("utf-8", errors="replace"),
                author,
                ruleset.rule_count,
            )
        return {"version": int(version), "digest": ruleset.digest}

    async def listing(self) -> dict[str, Any]:
        rows = await self.pool.fetch(
            "SELECT version, digest, author, rule_count, created_at, published_at, published_by"
            " FROM risk_rulesets ORDER BY version DESC LIMIT 100"
        )
        return {"object": "list", "data": [_ruleset(r) for r in rows]}

    async def get(self, version: int) -> dict[str, Any]:
        row = await self.pool.fetchrow("SELECT * FROM risk_rulesets WHERE version = $1", version)
        if row is None:
            raise ProblemError(404, "risk_ruleset_not_found", "Rule set not found", str(version))
        return {**_ruleset(row), "document": json.loads(row["document"]), "source": row["source"]}

    async def dry_run(self, version: int, days: int, changes_max: int) -> dict[str, Any]:
        if not 1 <= days <= DRY_RUN_DAYS_MAX or not 1 <= changes_max <= DRY_RUN_CHANGES_MAX:
            raise ProblemError(
                422,
                "validation_error",
                "Invalid dry run",
                f"days 1..{DRY_RUN_DAYS_MAX}, changes_max 1..{DRY_RUN_CHANGES_MAX}",
            )
        row = await self.pool.fetchrow(
            "SELECT document FROM risk_rulesets WHERE version = $1", version
        )
        if row is None:
            raise ProblemError(404, "risk_ruleset_not_found", "Rule set not found", str(version))
        candidate = await self._compile(json.loads(row["document"]), version)
        since = datetime.now(UTC) - timedelta(days=days)
        rows = await self.pool.fetch(
            """SELECT id, merchant_id, amount_minor, currency, beneficiary_account,
                      beneficiary_bank_code, beneficiary_name, created_at, risk_outcome,
                      risk_version
               FROM payouts WHERE created_at >= $1 ORDER BY created_at, id""",
            since,
        )
        history = [
            risk.HistoricalPayout(
                facts=facts_of(r),
                recorded_outcome=r["risk_outcome"],
                recorded_version=r["risk_version"],
            )
            for r in rows
        ]
        loop = asyncio.get_running_loop()
        report = await loop.run_in_executor(
            None, lambda: risk.dry_run(candidate, history, changes_max=changes_max)
        )
        return dict(msgspec.to_builtins(report.as_dict()))

    async def publish(self, version: int, by: str) -> dict[str, Any]:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE risk_rulesets IN SHARE ROW EXCLUSIVE MODE")
            row = await conn.fetchrow(
                "SELECT * FROM risk_rulesets WHERE version = $1 FOR UPDATE", version
            )
            if row is None:
                raise ProblemError(
                    404, "risk_ruleset_not_found", "Rule set not found", str(version)
                )
            newest = await conn.fetchval(
                "SELECT max(version) FROM risk_rulesets WHERE published_at IS NOT NULL"
            )
            if row["published_at"] is None and version < newest:
                raise ProblemError(
                    409,
                    "risk_ruleset_outdated",
                    "Rule set outdated",
                    f"version {newest} is already published; store this one again to publish it",
                )
            if row["published_at"] is None:
                await conn.execute(
                    "UPDATE risk_rulesets SET published_at = now(), published_by = $2"
                    " WHERE version = $1",
                    version,
                    by,
                )
                await outbox.enqueue(
                    conn,
                    event_type=PUBLISHED_EVENT,
                    producer=store.PRODUCER,
                    aggregate_id="risk_ruleset",
                    aggregate_version=version,
                    data={"version": version, "digest": row["digest"], "published_by": by},
                )
        await self.refresh()
        return await self.get(version)


def _ruleset(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "version": row["version"],
        "digest": row["digest"],
        "author": row["author"],
        "rule_count": row["rule_count"],
        "created_at": row["created_at"].isoformat(),
        "published_at": row["published_at"].isoformat() if row["published_at"] else None,
        "published_by": row["published_by"],
    }
