"""Event files for the batch driver: reading them (shared with the replay producer), counting, hashing.

How a file becomes payloads lives in `features.sources`, which `serving` reads files through
too: the batch driver and the replay producer see the same events in the same files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq

from features.sources import check_source, read_payloads

__all__ = ["check_source", "count_events", "fingerprint", "read_payloads"]


def count_events(path: Path) -> int:
    """Number of payloads in a file, cheaply (Parquet metadata, line count otherwise)."""
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return lines - 1 if path.suffix.lower() == ".csv" else lines


def fingerprint(paths: list[Path]) -> str:
    """Content hash of the inputs: the same files give the same fingerprint anywhere."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
