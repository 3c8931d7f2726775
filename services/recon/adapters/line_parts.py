"""Statement lines written to Parquet a block at a time, then joined into one file.

The intake never holds a whole file's lines as frames: each block of lines is written as a
numbered part in a private directory beside the destination, and the parts are joined by
polars' streaming engine (row order kept) into the one Parquet file the matching engine reads.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import polars as pl

from services.recon.adapters import columnar
from services.recon.domain.lines import Statement

# Lines of parsed statements per part: ~100 MB of frames, whatever the file's size.
PARSED_LINES_PER_PART = 200_000


class LineParts:
    """``with LineParts(dest) as parts: parts.add(frame) ...; parts.publish()``: ``dest``
    appears only on ``publish``; the parts go with the context whatever happens."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._dir: Path | None = None
        self._parts: list[Path] = []

    def __enter__(self) -> LineParts:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.", dir=self.dest.parent))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._dir is not None
        shutil.rmtree(self._dir, ignore_errors=True)

    def next_path(self) -> Path:
        assert self._dir is not None, "use LineParts as a context manager"
        path = self._dir / f"{len(self._parts):06d}.parquet"
        self._parts.append(path)
        return path

    def add(self, frame: pl.DataFrame) -> None:
        frame.select(list(columnar.LINE_SCHEMA)).cast(columnar.LINE_SCHEMA).write_parquet(  # type: ignore[arg-type]
            self.next_path()
        )

    def publish(self) -> int:
        """Join the parts into ``dest`` (written beside it, then renamed); the line count."""
        assert self._dir is not None
        tmp = self._dir / "joined.parquet"
        if not self._parts:
            columnar.write_lines([], tmp)
        elif len(self._parts) == 1:
            os.replace(self._parts[0], tmp)
        else:
            pl.scan_parquet(self._parts).sink_parquet(tmp)
        count = pl.scan_parquet(tmp).select(pl.len()).collect().item()
        os.replace(tmp, self.dest)
        return int(count)


def write_parsed(statements: list[Statement], dest: Path) -> int:
    """The parsers' lines to ``dest``, a part at a time; each statement's lines are released
    as their part is written, so the objects and all their frames are never held at once."""
    with LineParts(dest) as parts:
        for st in statements:
            lines, st.lines = st.lines, []
            for start in range(0, len(lines), PARSED_LINES_PER_PART):
                chunk = lines[start : start + PARSED_LINES_PER_PART]
                columnar.write_lines([replace(st, lines=chunk)], parts.next_path())
                lines[start : start + len(chunk)] = [None] * len(chunk)  # type: ignore[list-item]
                del chunk
        return parts.publish()
