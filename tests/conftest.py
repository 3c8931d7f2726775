"""Session-wide fixtures: one run id names every throw-away database and broker object."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.support import infra


def _expire_test_queues_by_policy() -> None:
    """Queues of test runs (names ``test.…``) expire on the broker two minutes after their last
    consumer left, so runs — aborted ones included — never pile quorum queues up in a shared
    broker. A policy, unlike a queue argument, cannot make two declarations of one queue
    disagree. Needs ``rabbitmqctl`` (a local broker); without it the queues are only deleted by
    the fixtures that know them."""
    if shutil.which("rabbitmqctl") is None:
        return
    subprocess.run(
        [
            "rabbitmqctl",
            "set_policy",
            "--apply-to",
            "queues",
            "--priority",
            "10",
            "payments-test-runs",
            r"^test\.",
            '{"expires": 120000}',
        ],
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


_expire_test_queues_by_policy()


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
