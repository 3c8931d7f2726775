"""The statement drop directory: ``<root>/<channel>/{inbox,processing,archive,quarantine}``.

Rename convention (docs/RECONCILIATION.md): a producer writes ``<name>.part`` (or a dotfile)
and renames it to its final name when complete; rename is atomic on one filesystem. As a
second guard for producers that do not follow it, a file is taken only once its size and
modification time are unchanged across two consecutive scans.

A taken file is moved to ``processing/`` first (atomic rename), so two recon processes never
both take it; after a crash, files found in ``processing/`` are taken again on start.
Archived and quarantined files keep their name behind a short content hash, so two files
with one name never overwrite each other; a quarantined file has ``<name>.reason.json``.

Bookkeeping in ``processing/`` is in dotfiles, which are never taken as statements: the
attempts made at a file (``.<name>.attempts``, counted before each attempt, so a crash counts
too), its last error (``.<name>.error``) and uploads being streamed to disk
(``.upload-<random>.part``).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.recon.domain.rules import valid_channel

SUBDIRS = ("inbox", "processing", "archive", "quarantine")
IN_PROGRESS_SUFFIXES = (".part", ".tmp", ".partial")


@dataclass
class DropDir:
    root: Path
    # path -> (size, mtime_ns) seen at the previous scan
    _seen: dict[Path, tuple[int, int]] = field(default_factory=dict)
    # processing path -> monotonic time of its next attempt, for files whose intake failed
    _retry_at: dict[Path, float] = field(default_factory=dict)

    def channels(self, configured: list[str]) -> list[str]:
        found = set(configured)
        if self.root.is_dir():
            found.update(
                p.name for p in self.root.iterdir() if p.is_dir() and valid_channel(p.name)
            )
        return sorted(found)

    def ensure(self, channel: str) -> None:
        for sub in SUBDIRS:
            (self.root / channel / sub).mkdir(parents=True, exist_ok=True)

    def stable_files(self, channel: str) -> list[Path]:
        """Files in ``inbox/`` whose size and mtime did not change since the last scan."""
        inbox = self.root / channel / "inbox"
        ready: list[Path] = []
        present: set[Path] = set()
        for entry in sorted(inbox.iterdir()) if inbox.is_dir() else []:
            name = entry.name
            if name.startswith(".") or name.endswith(IN_PROGRESS_SUFFIXES):
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            if not entry.is_file():
                continue
            present.add(entry)
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._seen.get(entry) == signature:
                ready.append(entry)
            self._seen[entry] = signature
        for gone in [p for p in self._seen if p.parent == inbox and p not in present]:
            del self._seen[gone]
        return ready

    def leftovers(self, channel: str) -> list[Path]:
        """Files a crashed process had moved to ``processing/`` and never finished."""
        processing = self.root / channel / "processing"
        if not processing.is_dir():
            return []
        return sorted(p for p in processing.iterdir() if p.is_file() and not _hidden(p))

    def upload_spool(self, channel: str) -> Path:
        """A private name in ``processing/`` for an upload being streamed to disk."""
        self.ensure(channel)
        return self.root / channel / "processing" / f".upload-{secrets.token_hex(8)}.part"

    # -- retries of files whose intake failed --------------------------------------------

    def attempts(self, path: Path) -> int:
        try:
            return int(_attempts_file(path).read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def count_attempt(self, path: Path) -> int:
        """Count an attempt before it is made (a crash during it counts); its number."""
        attempt = self.attempts(path) + 1
        _attempts_file(path).write_text(str(attempt))
        return attempt

    def uncount_attempt(self, path: Path) -> None:
        """The attempt failed for want of infrastructure, not because of the file."""
        attempt = self.attempts(path) - 1
        if attempt > 0:
            _attempts_file(path).write_text(str(attempt))
        else:
            _attempts_file(path).unlink(missing_ok=True)

    def retry_later(self, path: Path, at: float) -> None:
        self._retry_at[path] = at

    def due_retries(self, channel: str, now: float) -> list[Path]:
        """Files of ``channel`` whose failed intake is due for another attempt at ``now``."""
        processing = self.root / channel / "processing"
        due = sorted(p for p, at in self._retry_at.items() if p.parent == processing and at <= now)
        for path in due:
            del self._retry_at[path]
        return [p for p in due if p.exists()]

    def note_error(self, path: Path, error: str) -> None:
        _error_file(path).write_text(error[:2000])

    def last_error(self, path: Path) -> str:
        try:
            return _error_file(path).read_text()
        except FileNotFoundError:
            return "the process stopped during every attempt (a crash, or killed for memory?)"

    def _done(self, path: Path) -> None:
        self._retry_at.pop(path, None)
        _attempts_file(path).unlink(missing_ok=True)
        _error_file(path).unlink(missing_ok=True)

    def claim(self, path: Path) -> Path | None:
        """Move a file from inbox to processing; None if another process took it first."""
        target = self.root / path.parent.parent.name / "processing" / path.name
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return None
        self._seen.pop(path, None)
        return target

    def archive(self, path: Path, sha256: str, *, duplicate: bool = False) -> Path:
        tag = "duplicate-" if duplicate else ""
        target = path.parent.parent / "archive" / f"{tag}{sha256[:12]}-{path.name}"
        os.replace(path, target)
        self._done(path)
        return target

    def quarantine(self, path: Path, sha256: str, reason: dict[str, Any]) -> Path:
        target = path.parent.parent / "quarantine" / f"{sha256[:12]}-{path.name}"
        note = target.with_name(target.name + ".reason.json")
        note.write_text(json.dumps(reason, indent=2, sort_keys=True, default=str))
        os.replace(path, target)
        self._done(path)
        return target


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _attempts_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.attempts")


def _error_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.error")
