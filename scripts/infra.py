"""Make PostgreSQL and RabbitMQ reachable, then print their URLs as shell assignments.

Order (ARCHITECTURE.md §3): use DATABASE_URL / AMQP_URL when set; else a server already
listening on the default port; else start one — an embedded PostgreSQL from the ``pgserver``
wheel (no root needed), RabbitMQ from the OS package when root — otherwise exit non-zero with
a message that says exactly what to install. Never pretends: every URL printed answered.

Usage: ``eval "$(python scripts/infra.py)"``
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def say(message: str) -> None:
    print(f"infra: {message}", file=sys.stderr)


def listening(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_listening(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if listening(host, port):
            return True
        time.sleep(0.5)
    return False


def postgres_answers(url: str) -> bool:
    try:
        import asyncio

        import asyncpg

        async def probe() -> None:
            conn = await asyncpg.connect(url, timeout=5)
            await conn.fetchval("SELECT 1")
            await conn.close()

        asyncio.run(probe())
        return True
    except Exception as exc:
        say(f"PostgreSQL at {url} did not answer: {exc}")
        return False


def ensure_postgres() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        if not postgres_answers(url):
            sys.exit("infra: DATABASE_URL is set but PostgreSQL does not answer there")
        return url
    if listening("127.0.0.1", 5432) and postgres_answers(DEFAULT_PG):
        return DEFAULT_PG
    # Start an embedded server from the pgserver wheel (no root needed).
    pgdata = VAR / "pgdata"
    say(f"no PostgreSQL on 127.0.0.1:5432; starting an embedded one in {pgdata}")
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "pgserver>=0.1.4"], check=True
        )
        code = (
            "import pgserver,sys;"
            f"s=pgserver.get_server({str(pgdata)!r}, cleanup_mode=None);"
            "print(s.get_uri())"
        )
        out = (
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
            .stdout.strip()
            .splitlines()[-1]
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        sys.exit(
            "infra: could not start an embedded PostgreSQL "
            f"({exc}). Install PostgreSQL >= 14 (apt-get install postgresql) or set DATABASE_URL."
        )
    if not postgres_answers(out):
        sys.exit("infra: the embedded PostgreSQL did not answer")
    return out


def ensure_rabbitmq() -> str:
    url = os.environ.get("AMQP_URL")
    if url:
        parts = urlsplit(url)
        if not wait_listening(parts.hostname or "127.0.0.1", parts.port or 5672, 10):
            sys.exit("infra: AMQP_URL is set but nothing listens there")
        return url
    if listening("127.0.0.1", 5672):
        return DEFAULT_AMQP
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if shutil.which("rabbitmq-server") is None:
        if not is_root:
            sys.exit(
                "infra: RabbitMQ is not running on 127.0.0.1:5672 and cannot be installed "
                "without root. Install it with `sudo apt-get install rabbitmq-server` and start "
                "it (`sudo rabbitmq-server -detached`), or set AMQP_URL."
            )
        say("installing rabbitmq-server from the OS package")
        subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "rabbitmq-server"],
            check=True,
            stdout=subprocess.DEVNULL,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    say("starting rabbitmq-server")
    subprocess.run(["rabbitmq-server", "-detached"], check=False)
    if not wait_listening("127.0.0.1", 5672, 90):
        sys.exit("infra: rabbitmq-server was started but 127.0.0.1:5672 never opened")
    # The port opens slightly before the broker accepts AMQP sessions.
    if shutil.which("rabbitmqctl"):
        subprocess.run(["rabbitmqctl", "await_startup"], check=False, stdout=subprocess.DEVNULL)
    return DEFAULT_AMQP


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """The console's browser tests drive the OS Chromium through Playwright (no browser
    download). Installed from the OS package when root; otherwise say what to install."""
    if CHROMIUM.exists():
        return
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        say(
            f"{CHROMIUM} is missing: the console browser tests (tests/console) need it. "
            "Install it with `sudo apt-get install chromium`."
        )
        return
    say("installing chromium from the OS package (console browser tests)")
    subprocess.run(["apt-get", "update", "-q"], check=False, stdout=subprocess.DEVNULL)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "chromium"],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def main() -> None:
    VAR.mkdir(exist_ok=True)
    pg = ensure_postgres()
    amqp = ensure_rabbitmq()
    ensure_chromium()
    say(f"PostgreSQL {pg.split('@')[-1]}, RabbitMQ {amqp.split('@')[-1]}")
    print(f"export DATABASE_URL='{pg}'")
    print(f"export AMQP_URL='{amqp}'")


if __name__ == "__main__":
    main()
