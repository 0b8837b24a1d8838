"""Event files in, raw payloads out: JSONL, CSV and Parquet, read the same way.

Each payload keeps its position (file and line or row) so a dead letter can point at the exact
input it came from. Payloads are not validated here: the FeatureSet does that, once.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

FORMATS = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")
Payload = bytes | dict[str, Any]


def check_source(path: Path) -> None:
    """Fail before any work starts if `path` cannot be read as an event file."""
    if not path.exists():
        raise FileNotFoundError(f"event file {path} does not exist")
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: unsupported format {path.suffix!r}; expected one of {', '.join(FORMATS)}")


def count_events(path: Path) -> int:
    """Number of payloads in a file, cheaply (Parquet metadata, line count otherwise)."""
    if path.suffix.lower() == ".parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with path.open("rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return lines - 1 if path.suffix.lower() == ".csv" else lines


def read_payloads(path: Path) -> Iterator[tuple[str, Payload]]:
    """Yield (position, payload) for every event in the file, in file order."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet(path)
    elif suffix == ".csv":
        yield from _csv(path)
    else:
        yield from _jsonl(path)


def _jsonl(path: Path) -> Iterator[tuple[str, Payload]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield f"{path.name}:{number}", line


def _csv(path: Path) -> Iterator[tuple[str, Payload]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            yield f"{path.name}:{number}", {k: v for k, v in row.items() if k is not None and v != ""}


def _parquet(path: Path) -> Iterator[tuple[str, Payload]]:
    row = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65_536):
        for payload in batch.to_pylist():
            if None in payload.values():
                payload = {k: v for k, v in payload.items() if v is not None}
            yield f"{path.name}:{row}", payload
            row += 1


def fingerprint(paths: list[Path]) -> str:
    """Content hash of the inputs: the same files give the same fingerprint anywhere."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]
