"""DuckDB tables of a use case: feature rows, labels, dead letters, and materialization runs.

The tables of rows, labels and dead letters are defined in `duckdb_tables`, shared with the
stream driver's sink; this module adds the materialization runs and the batch writer. Rows are
written with INSERT OR IGNORE, so writing the same input twice, or finishing an interrupted run,
never duplicates a row.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

import duckdb_tables
from duckdb_tables import ARROW_TYPES, DEAD_LETTER_COLUMNS, table_names
from features.featureset import DeadLetter, FeatureSet

__all__ = ["DEAD_LETTER_COLUMNS", "DatabaseBusy", "TableWriter", "connect", "ensure_tables", "table_names"]


class DatabaseBusy(RuntimeError):
    """The DuckDB file is held by another process (a notebook, a second materialize)."""


def connect(
    path: str | Path, read_only: bool = False, retries: int = 10, wait_s: float = 1.0
) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, retrying while another process holds its write lock."""
    if read_only and not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist: run `samestream materialize` first")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(retries):
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if attempt == retries - 1:
                raise DatabaseBusy(
                    f"{path} is open in another process (a notebook or another samestream command); "
                    "close it there, or read it with duckdb.connect(path, read_only=True) while writing here"
                ) from exc
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def ensure_tables(con: duckdb.DuckDBPyConnection, fs: FeatureSet) -> None:
    """Create the use case's tables (`duckdb_tables`) and the materialization runs if missing."""
    duckdb_tables.ensure_tables(con, fs)
    con.execute(
        "CREATE TABLE IF NOT EXISTS materializations (use_case VARCHAR, featureset_version VARCHAR, "
        "input_fingerprint VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, events_read BIGINT, "
        "rows_written BIGINT, labels_written BIGINT, dead_letters BIGINT, completed BOOLEAN, "
        "PRIMARY KEY (use_case, featureset_version, input_fingerprint))"
    )


class TableWriter:
    """Buffers rows column by column and appends them in large Arrow batches."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        table: str,
        columns: Mapping[str, str],
        constants: Mapping[str, Any] | None = None,
        batch_rows: int = 50_000,
    ) -> None:
        self.con = con
        self.table = table
        self.columns = dict(columns)
        self.constants = dict(constants or {})
        self.batch_rows = batch_rows
        names = tuple(self.columns)
        self._pick = operator.itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
        self._rows: list[tuple[Any, ...]] = []
        self.written = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self._rows.append(self._pick(row))
        if len(self._rows) >= self.batch_rows:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        pending = len(self._rows)
        columns = zip(*self._rows, strict=True)
        arrays = {
            name: pa.array(values, type=ARROW_TYPES[kind])
            for (name, kind), values in zip(self.columns.items(), columns, strict=True)
        }
        for name, value in self.constants.items():
            arrays[name] = pa.array([value] * pending, type=pa.string())
        batch = pa.table(arrays)  # noqa: F841  (read by DuckDB's replacement scan below)
        before = self._count()
        self.con.execute(f"INSERT OR IGNORE INTO {self.table} BY NAME SELECT * FROM batch")
        self.written += self._count() - before
        self._rows = []

    def _count(self) -> int:
        return self.con.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0]  # type: ignore[index]


def dead_letter_row(letter: DeadLetter) -> dict[str, str]:
    return {
        "source": letter.source,
        "position": letter.position,
        "kind": letter.kind,
        "reason": letter.reason,
        "payload": letter.payload,
    }
