"""Throw-away PostgreSQL and RabbitMQ servers of a chaos run, so the run can restart them
without touching the servers other tests use.

PostgreSQL: ``initdb`` + ``pg_ctl`` (on PATH), run as the ``postgres`` user when we are root.
RabbitMQ: a second node (``chaos<port>@localhost``) with its own ports, data and log directories.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from tests.support.processes import free_port


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["su", "postgres", "-c", " ".join(cmd)]


class OwnPostgres:
    def __init__(self, base: Path) -> None:
        self.dir = base / "pg"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> OwnPostgres:
        self.dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.dir.parent, 0o755)  # the rabbitmq user needs to pass through too
        data = self.dir / "data"
        subprocess.run(
            _as_postgres(
                ["initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._ctl("start", "-w", "-t", "60")
        return self

    def _ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300"
        subprocess.run(
            _as_postgres(
                [
                    "pg_ctl",
                    "-D",
                    str(self.dir / "data"),
                    "-l",
                    str(self.dir / "log"),
                    "-o",
                    f"'{opts}'",
                    *args,
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def restart_immediate(self) -> None:
        """Crash-like: no checkpoint, every connection cut, recovery from the WAL."""
        self._ctl("restart", "-m", "immediate", "-w", "-t", "60")

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "fast", "-w", "-t", "30")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRabbit:
    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.node = f"chaos{self.port}@localhost"
        self.dir = base / "rabbit"
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            # Our own listener (the machine's rabbitmq.conf names the shared node's port).
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
        }

    def _ctl(self, *args: str, timeout_s: float = 90) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            check=True,
            capture_output=True,
            timeout=timeout_s,
            env=self._env(),
        )

    def start(self) -> OwnRabbit:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        if os.geteuid() == 0:  # the server script runs the node as the rabbitmq user
            pw = pwd.getpwnam("rabbitmq")
            for path in (self.dir, self.dir / "enabled_plugins", self.dir / "rabbitmq.conf"):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        subprocess.run(["rabbitmq-server", "-detached"], check=True, env=self._env(), timeout=60)
        deadline = time.monotonic() + 90
        while True:
            try:
                self._ctl("await_startup", timeout_s=60)
                return self
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)  # the node is still booting

    def restart(self) -> None:
        """The broker application stops (every connection and channel closed) and starts again;
        durable queues and persistent messages survive."""
        self._ctl("stop_app")
        self._ctl("start_app")

    def stop(self) -> None:
        try:
            self._ctl("stop", timeout_s=60)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
