"""Our records for a run: the router's attempts export (NDJSON), fetched once per run.

The export is streamed to a file (bounded in size) and hashed on the way, so the run's input
hash covers exactly the bytes it matched against and DuckDB reads it without Python objects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import aiohttp

from services.kit.http_client import correlation_headers


class RecordsUnavailable(Exception):
    """The records could not be fetched; the run is retried later (an alert is raised)."""


class RecordsIncomplete(RecordsUnavailable):
    """The export arrived but is not whole (cut at the router's row cap, or cut short):
    matching against it would report missing records as breaks, so the run is refused."""


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
        params = {
            "bank": channel,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "trailer": "true",
        }
        digest = hashlib.sha256()
        size = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        rows = 0
        tail = b""  # the last (possibly partial) line: the trailer once the stream ends
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
                        if size + len(tail) + len(chunk) > self.max_bytes:
                            raise RecordsUnavailable(
                                f"export larger than RECON_EXPORT_MAX_BYTES={self.max_bytes}"
                            )
                        data = tail + chunk
                        # Keep back everything after the second-to-last line end.
                        cut = data.rfind(b"\n", 0, len(data) - 1) + 1
                        done, tail = data[:cut], data[cut:]
                        if done:
                            rows += done.count(b"\n")
                            size += len(done)
                            digest.update(done)
                            out.write(done)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RecordsUnavailable(f"router export failed: {type(exc).__name__}: {exc}") from None
        check_trailer(tail, rows)
        return RecordsFile(dest, digest.hexdigest(), size)


def check_trailer(tail: bytes, rows: int) -> None:
    """The export's last line must be ``{"end": true, "rows": N, "truncated": false}`` with N
    the number of records before it; anything else means we hold an incomplete export."""
    try:
        trailer = json.loads(tail)
    except ValueError:
        trailer = None
    if not isinstance(trailer, dict) or trailer.get("end") is not True:
        raise RecordsIncomplete(
            f"export ended without its end record after {rows} rows (cut short,"
            " or a router that does not send one)"
        )
    if trailer.get("truncated") is not False:
        raise RecordsIncomplete(
            f"export truncated by the router after {trailer.get('rows')} rows"
            " (raise ROUTER_EXPORT_ROWS_MAX)"
        )
    if trailer.get("rows") != rows:
        raise RecordsIncomplete(f"export announced {trailer.get('rows')} rows but carried {rows}")


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
