"""The whole suite as real processes, for load, benchmark and chaos runs (and any test that
wants every service at once): bank simulator, ledger, router, payout and, optionally, recon —
on free ports, throw-away databases and broker names of one run.

``tests/e2e/conftest.py`` starts the same processes as a pytest fixture; this module is the
same wiring without pytest, so ``loadtest/run.py``, ``bench/e2e.py`` and ``tests/chaos`` can
start (and restart, and kill) the suite from a plain program.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support import infra
from tests.support.processes import ServiceProcess, free_port

SERVICE_TOKEN = "suite-service-token-0123456789"
BANK_KEY = "suite-bank-client-key-0123456789"
CALLBACK_SECRET = "suite-bank-callback-secret-0123"
ADMIN_KEY = "suite-admin-key-0123456789"
FINANCE_KEY = "suite-finance-key-0123456789"
SERVICES = ("banksim", "ledger", "router", "payout", "recon")
PAYOUT_QUEUES = ("payout.attempt_outcomes", "payout.recon_outcomes", "payout.webhooks")


@dataclass
class SuiteSpec:
    """What to start. ``env`` overrides go to every process; ``service_env`` to one."""

    workdir: Path
    banks_file: Path
    channels: Sequence[Mapping[str, Any]]
    run_id: str = field(default_factory=infra.new_run_id)
    name: str = "suite"
    database_url: str = field(default_factory=infra.database_url)
    amqp_url: str = field(default_factory=infra.amqp_url)
    with_recon: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    service_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    ports: Mapping[str, int] = field(default_factory=dict)

    @property
    def db_prefix(self) -> str:
        return f"{self.run_id}_{self.name}_"

    @property
    def amqp_prefix(self) -> str:
        return f"test.{self.run_id}.{self.name}"


class Suite:
    """Started processes by name (``suite["payout"]``), their URLs, and a clean teardown."""

    def __init__(self, spec: SuiteSpec) -> None:
        self.spec = spec
        spec.workdir.mkdir(parents=True, exist_ok=True)
        self.drop_dir = spec.workdir / "drop"
        self.drop_dir.mkdir(exist_ok=True)
        names = [s for s in SERVICES if s != "recon" or spec.with_recon]
        ports = {name: spec.ports.get(name) or free_port() for name in names}
        self.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        channels_file = spec.workdir / "channels.yaml"
        channels_file.write_text(yaml.safe_dump({"channels": list(spec.channels)}))
        rules_file = spec.workdir / "rules.yaml"
        rules_file.write_text(yaml.safe_dump({"rules": []}))
        common = {
            "DATABASE_URL": spec.database_url,
            "DB_NAME_PREFIX": spec.db_prefix,
            "AMQP_URL": spec.amqp_url,
            "AMQP_PREFIX": spec.amqp_prefix,
            "SERVICE_TOKEN": SERVICE_TOKEN,
            "BANKSIM_CLIENT_KEY": BANK_KEY,
            "BANK_CALLBACK_SECRET": CALLBACK_SECRET,
            "LEDGER_URL": self.urls["ledger"],
            "ROUTER_URL": self.urls["router"],
            "BANKSIM_URL": self.urls["banksim"],
            "RECON_DROP_DIR": str(self.drop_dir),
            "LOG_LEVEL": "info",
            **spec.env,
        }
        own: dict[str, dict[str, str]] = {
            "banksim": {
                "BANKSIM_CONFIG": str(spec.banks_file),
                "BANKSIM_EOD_ENABLED": "false",
                "BANKSIM_SEED": "17",
            },
            "ledger": {"LEDGER_DB_APP_ROLE": f"{spec.db_prefix}ledger_app"},
            "router": {
                "ROUTER_CHANNELS_FILE": str(channels_file),
                "ROUTER_RULES_FILE": str(rules_file),
                "ROUTER_CALLBACK_BASE_URL": self.urls["router"],
            },
            "payout": {"ADMIN_API_KEY": ADMIN_KEY},
            "recon": {
                "RECON_DATA_DIR": str(spec.workdir / "recon-data"),
                "RECON_CHANNELS_FILE": str(spec.workdir / "recon-channels.yaml"),
                "RECON_SCAN_INTERVAL_MS": "200",
                "RECON_FINANCE_KEY": FINANCE_KEY,
            },
        }
        if spec.with_recon:
            banks = yaml.safe_load(spec.banks_file.read_text())["banks"]
            recon_channels = {
                bank: {"window_days": 0, "currencies": sorted(cfg["accounts"])}
                for bank, cfg in banks.items()
            }
            (spec.workdir / "recon-channels.yaml").write_text(
                yaml.safe_dump({"channels": recon_channels})
            )
        self.env: dict[str, dict[str, str]] = {}
        self.processes: dict[str, ServiceProcess] = {}
        for name in names:
            env = {
                **common,
                **own[name],
                f"{name.upper()}_PORT": str(ports[name]),
                **spec.service_env.get(name, {}),
            }
            self.env[name] = env
            self.processes[name] = ServiceProcess(
                f"{spec.name}-{name}", f"services.{name}", env, ports[name]
            )

    def __getitem__(self, name: str) -> ServiceProcess:
        return self.processes[name]

    def __iter__(self) -> Iterator[ServiceProcess]:
        return iter(self.processes.values())

    def pids(self) -> dict[str, int]:
        return {
            name: p.proc.pid
            for name, p in self.processes.items()
            if p.proc is not None and p.proc.poll() is None
        }

    def start(self, ready_timeout_s: float = 60.0) -> Suite:
        for proc in self.processes.values():
            proc.start(ready_timeout_s=ready_timeout_s)
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            if proc.proc is not None and proc.proc.poll() is None:
                with contextlib.suppress(AssertionError):
                    proc.stop()

    def cleanup(self) -> None:
        """Drop this run's databases, the ledger's app role and the broker names."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self.acleanup())
            return
        # Called from a coroutine (a failed start inside a running loop): use another thread.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self.acleanup()).result()

    async def acleanup(self) -> None:
        """``cleanup`` from a running event loop."""
        if os.environ.get("KEEP_TEST_DATABASES"):
            return
        from services.ledger.adapters.roles import drop_app_role
        from services.ledger.settings import from_env as ledger_from_env

        ledger = ledger_from_env(self.env["ledger"])
        with contextlib.suppress(Exception):  # the role may never have been created
            await drop_app_role([ledger.owner_dsn], ledger.app_role)
        await _drop_databases(self.spec.database_url, self.spec.db_prefix)
        prefix = self.spec.amqp_prefix
        with contextlib.suppress(Exception):  # the broker may be the one a chaos run stopped
            await _delete_broker_names(
                self.spec.amqp_url, prefix, [f"{prefix}.{q}" for q in PAYOUT_QUEUES]
            )


async def _drop_databases(server_url: str, prefix: str) -> None:
    import asyncpg

    from services.kit import db

    conn = await asyncpg.connect(server_url)
    try:
        names = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            prefix.replace("_", "\\_") + "%",
        )
    finally:
        await conn.close()
    for row in names:
        await db.drop_database(server_url, row["datname"])


async def _delete_broker_names(url: str, prefix: str, queues: list[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in (f"{prefix}.events", f"{prefix}.dlx"):
            await channel.exchange_delete(exchange)
        await channel.queue_delete(f"{prefix}.dead_letters")
    finally:
        await connection.close()
