"""Recon fixtures: one throw-away database per session (tests isolate by channel name)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.kit import db
from services.recon.adapters.parsing import default_parser
from services.recon.adapters.records import FileRecords
from services.recon.domain.rules import RulesBook, load_rules
from services.recon.handlers import ReconService
from services.recon.settings import Settings, from_env
from tests.support import infra


@pytest.fixture(scope="package")
def recon_dsn(run_id: str) -> str:
    return infra.run(infra.create_service_database(run_id, "recon"))


@pytest.fixture
def channel() -> str:
    return f"bank_{uuid.uuid4().hex[:8]}"


def make_settings(run_id: str, tmp_path: Path, amqp_prefix: str, **extra: str) -> Settings:
    return from_env(
        {
            "DATABASE_URL": infra.database_url(),
            "AMQP_URL": infra.amqp_url(),
            "AMQP_PREFIX": amqp_prefix,
            "DB_NAME_PREFIX": f"{run_id}_",
            "RECON_DROP_DIR": str(tmp_path / "drop"),
            "RECON_DATA_DIR": str(tmp_path / "data"),
            "RECON_DUCKDB_THREADS": "1",
            "RECON_DUCKDB_MEMORY_LIMIT_MB": "256",
            **extra,
        }
    )


@pytest.fixture
def settings(run_id: str, tmp_path: Path, amqp_prefix: str) -> Settings:
    return make_settings(run_id, tmp_path, amqp_prefix)


@pytest.fixture
async def pool(recon_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(recon_dsn, max_size=4)
    yield p
    await p.close()


def rules_book(channel: str, **overrides: Any) -> RulesBook:
    return load_rules(
        {
            "channels": {
                channel: {
                    "window_days": 2,
                    "one_to_many_group_by": ["currency", "record_date", "channel_id"],
                    **overrides,
                }
            }
        }
    )


@pytest.fixture
def records_path(tmp_path: Path) -> Path:
    return tmp_path / "records.ndjson"


@pytest.fixture
def service(
    pool: asyncpg.Pool, settings: Settings, channel: str, records_path: Path
) -> ReconService:
    return ReconService(
        pool, settings, rules_book(channel), FileRecords(records_path), default_parser()
    )
