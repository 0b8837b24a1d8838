"""Feature rows, labels and dead letters from the stream into the training DuckDB tables.

The tables are the ones `samestream materialize` writes, created here from the same definition
(`duckdb_tables`) if the stream writes first. Rows are inserted with INSERT OR IGNORE at each
checkpoint, before the offsets are committed: a replay after a crash, or replaying the topic
from its earliest offset again, adds nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from quixstreams.sinks import BatchingSink, SinkBatch

from duckdb_tables import ARROW_TYPES, DEAD_LETTER_COLUMNS, ensure_tables, table_names
from features.featureset import FeatureSet

ITEM_TABLES = {"row": "features", "label": "labels", "dead": "dead_letters"}
"""Kind of a feature process's item -> the table it goes to (`duckdb_tables.table_names`)."""


class FeatureTableSink(BatchingSink):
    """A quixstreams sink for the feature process's items (`row`, `label`, `dead`).

    Parameters
    ----------
    fs:
        The FeatureSet whose columns define the tables.
    path:
        The DuckDB file; opened once, when the application starts.
    """

    def __init__(self, fs: FeatureSet, path: str | Path) -> None:
        super().__init__()
        self.fs = fs
        self.path = Path(path)
        tables = table_names(fs.name)
        self.names = {item: tables[table] for item, table in ITEM_TABLES.items()}
        self.columns: dict[str, dict[str, str]] = {
            "row": {**fs.columns, "featureset_version": "str"},
            "label": dict(fs.label_columns),
            "dead": {**DEAD_LETTER_COLUMNS, "featureset_version": "str"},
        }
        self.written = {"row": 0, "label": 0, "dead": 0}
        self._con: duckdb.DuckDBPyConnection | None = None

    def setup(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(self.path))
        ensure_tables(self._con, self.fs)

    def write(self, batch: SinkBatch) -> None:
        assert self._con is not None, "the sink is used before the application started it"
        version = self.fs.version
        buffers: dict[str, list[dict[str, Any]]] = {"row": [], "label": [], "dead": []}
        for item in batch:
            kind, body = item.value
            if kind in buffers:
                buffers[kind].append(body if kind != "dead" else {**body, "featureset_version": version})
        for kind, bodies in buffers.items():
            if bodies:
                self.written[kind] += self._insert(self.names[kind], self.columns[kind], bodies)

    def _insert(self, table: str, columns: dict[str, str], bodies: list[dict[str, Any]]) -> int:
        con = self._con
        assert con is not None
        arrays = {c: pa.array([b.get(c) for b in bodies], type=ARROW_TYPES[t]) for c, t in columns.items()}
        frame = pa.table(arrays)
        con.register("incoming", frame)
        try:
            inserted = con.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM incoming").fetchone()
        finally:
            con.unregister("incoming")
        return int(inserted[0]) if inserted else 0

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
