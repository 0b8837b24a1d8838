"""Event files in, raw payloads out: JSONL, CSV and Parquet, read the same way by both drivers.

The batch driver (`training`) and the replay producer (`serving`) read event files through
these functions, so a file means the same events to both. Each payload keeps its position (file
and line or row) so a dead letter can point at the exact input it came from. Payloads are not
validated here: the FeatureSet does that, once.
"""

from __future__ import annotations

import contextlib
import csv
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import msgspec
import pyarrow.parquet as pq

FORMATS = (".jsonl", ".json", ".ndjson", ".csv", ".parquet")
Payload = bytes | dict[str, Any]


def check_source(path: Path) -> None:
    """Fail before any work starts if `path` cannot be read as an event file."""
    if not path.exists():
        raise FileNotFoundError(f"event file {path} does not exist")
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: unsupported format {path.suffix!r}; expected one of {', '.join(FORMATS)}")


def read_payloads(path: Path) -> Iterator[tuple[str, Payload]]:
    """Yield (position, payload) for every event in the file, in file order.

    JSON lines come as bytes; CSV and Parquet rows as dicts without their empty cells (CSV
    values are strings: `FeatureSet.parse` converts them to the declared types).
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet(path)
    elif suffix == ".csv":
        yield from _csv(path)
    else:
        yield from _jsonl(path)


def typed_row(schema: type[msgspec.Struct], row: Mapping[str, Any]) -> dict[str, Any]:
    """A CSV row with every string converted to its field's declared type, where it converts.

    For rows `FeatureSet.parse` rejects, which travel on as JSON to be rejected again by the
    feature process: typed, such a row fails there for the reason the batch driver gives (a
    negative count as `negative stock`, a zero quantity as out of range) rather than for
    carrying a string where JSON wants a number. A value that does not convert, or a field the
    schema lacks, stays as it is, and fails as it does in batch.
    """
    types = _field_types(schema)
    typed = dict(row)
    for name, value in row.items():
        declared = types.get(name)
        if declared is not None and isinstance(value, str):
            with contextlib.suppress(msgspec.ValidationError):
                typed[name] = msgspec.convert(value, declared, strict=False)
    return typed


@functools.cache
def _field_types(schema: type[msgspec.Struct]) -> dict[str, Any]:
    """Field name -> declared type without its constraints (a value out of range is still typed)."""
    return {
        f.encode_name: get_args(f.type)[0] if get_origin(f.type) is Annotated else f.type
        for f in msgspec.structs.fields(schema)
    }


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
