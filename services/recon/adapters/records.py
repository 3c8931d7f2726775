"""Our records for a run: the router's attempts export (NDJSON), fetched once per run.

The export is streamed to a file (bounded in size) and hashed on the way, so the run's input
hash covers exactly the bytes it matched against and DuckDB reads it without Python objects.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import aiohttp

from services.kit.http_client import correlation_headers


class RecordsUnavailable(Exception):
    """The records could not be fetched; the run is retried later (an alert is raised)."""


@dataclass(frozen=True)
class RecordsFile:
    path: Path
    sha256: str
    size_bytes: int


class RecordsSource(Protocol):
    async def fetch(self, channel: str, start: date, end: date, dest: Path) -> RecordsFile:
        """Write the records of ``channel`` sent in [start, end) to ``dest`` as NDJSON."""


class RouterExport:
    """``GET {ROUTER_URL}/v1/attempts/export?bank=&from=&to=`` with the service token."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        router_url: str,
        service_token: str,
        *,
        max_bytes: int,
        timeout_s: float,
    ) -> None:
        self.session = session
        self.base = router_url.rstrip("/")
        self.token = service_token
        self.max_bytes = max_bytes
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, connect=5)

    async def fetch(self, channel: str, start: date, end: date, dest: Path) -> RecordsFile:
        params = {"bank": channel, "from": start.isoformat(), "to": end.isoformat()}
        digest = hashlib.sha256()
        size = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with self.session.get(
                f"{self.base}/v1/attempts/export",
                params=params,
                headers=correlation_headers(self.token),
                timeout=self.timeout,
            ) as response:
                if response.status != 200:
                    body = (await response.text())[:300]
                    raise RecordsUnavailable(f"router answered {response.status}: {body}")
                with dest.open("wb") as out:
                    async for chunk in response.content.iter_chunked(1 << 16):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise RecordsUnavailable(
                                f"export larger than RECON_EXPORT_MAX_BYTES={self.max_bytes}"
                            )
                        digest.update(chunk)
                        out.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecordsUnavailable(f"router export failed: {type(exc).__name__}: {exc}") from None
        return RecordsFile(dest, digest.hexdigest(), size)


class FileRecords:
    """Records already on disk (ad-hoc runs, tests, the benchmark): the same NDJSON format."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def fetch(self, channel: str, start: date, end: date, dest: Path) -> RecordsFile:
        digest = hashlib.sha256()
        size = 0
        try:
            with self.path.open("rb") as src:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise RecordsUnavailable(f"records file unreadable: {exc}") from None
        return RecordsFile(self.path, digest.hexdigest(), size)
