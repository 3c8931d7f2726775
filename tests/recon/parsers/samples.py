"""Where the real-world statement samples live (copied from the shared fixtures, with licences)."""

from __future__ import annotations

from pathlib import Path

STATEMENTS = Path(__file__).resolve().parents[2] / "fixtures" / "statements"


def sample(relative: str) -> bytes:
    return (STATEMENTS / relative).read_bytes()


def samples(folder: str, pattern: str = "*") -> list[str]:
    """Sample paths under ``folder`` relative to the statements directory, licences excluded."""
    root = STATEMENTS / folder
    return sorted(
        str(p.relative_to(STATEMENTS))
        for p in root.rglob(pattern)
        if p.is_file() and p.name != "LICENSE" and "expected" not in p.parts
    )
