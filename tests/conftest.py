"""Session-wide fixtures: one run id names every throw-away database and broker object."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import infra

# Every queue a test run declares (in-process or in the service processes it starts, which
# inherit the environment) expires on the broker two minutes after its last consumer left, so
# runs — including aborted ones — never pile quorum queues up in a shared broker.
os.environ.setdefault("AMQP_QUEUE_EXPIRES_MS", "120000")


@pytest.fixture(scope="session")
def run_id() -> Iterator[str]:
    rid = infra.new_run_id()
    yield rid
    if not os.environ.get("KEEP_TEST_DATABASES"):
        infra.run(infra.drop_run_databases(rid))


@pytest.fixture(scope="session")
def database_url() -> str:
    return infra.database_url()


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return infra.amqp_url()


@pytest.fixture(scope="session")
def amqp_prefix(run_id: str) -> str:
    return f"test.{run_id}"
