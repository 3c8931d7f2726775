"""Writing into the reconciliation drop directory: ``<dir>/<bank>/inbox|answers/``.

A file is written as ``<name>.part``, flushed and fsynced, then renamed, so the watcher on the
other side never sees a half-written statement (rename is atomic on one filesystem).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(directory: Path, name: str, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    part = directory / f"{name}.part"
    with part.open("wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(part, final)
    return final


def inbox(drop_dir: Path, bank: str) -> Path:
    return drop_dir / bank / "inbox"


def answers(drop_dir: Path, bank: str) -> Path:
    return drop_dir / bank / "answers"
