"""Feature rows, labels and dead letters from the stream into the training DuckDB tables.

The tables are the ones `samestream materialize` writes (`<use case>_features` keyed by row id
and FeatureSet version, `<use case>_labels` by row id and label time, `<use case>_dead_letters`
by source, position and version), created here with the same definitions if the stream writes
first. Rows are inserted with INSERT OR IGNORE at each checkpoint, before the offsets are
committed: a replay after a crash, or replaying the topic from its earliest offset again, adds
nothing twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from quixstreams.sinks import BatchingSink, SinkBatch

from features.featureset import FeatureSet

SQL_TYPES = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "ts_ms": "TIMESTAMP"}
ARROW_TYPES = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "ts_ms": pa.timestamp("ms"),
}
DEAD_LETTER_COLUMNS = {"source": "str", "position": "str", "kind": "str", "reason": "str", "payload": "str"}


def table_names(use_case: str) -> dict[str, str]:
    return {"row": f"{use_case}_features", "label": f"{use_case}_labels", "dead": f"{use_case}_dead_letters"}


def ensure_tables(con: duckdb.DuckDBPyConnection, fs: FeatureSet) -> None:
    """Create the use case's feature, label and dead-letter tables if they do not exist yet."""
    names = table_names(fs.name)
    feature_cols = ", ".join(f'"{c}" {SQL_TYPES[t]}' for c, t in fs.columns.items())
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {names['row']} ({feature_cols}, featureset_version VARCHAR, "
        f'PRIMARY KEY ("{fs.row_id}", featureset_version))'
    )
    label_cols = ", ".join(f'"{c}" {SQL_TYPES[t]}' for c, t in fs.label_columns.items())
    time_col = next(c for c, t in fs.label_columns.items() if t == "ts_ms")
    con.execute(
        f'CREATE TABLE IF NOT EXISTS {names["label"]} ({label_cols}, PRIMARY KEY ("{fs.row_id}", "{time_col}"))'
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {names['dead']} (source VARCHAR, position VARCHAR, kind VARCHAR, "
        "reason VARCHAR, payload VARCHAR, featureset_version VARCHAR, "
        "PRIMARY KEY (source, position, featureset_version))"
    )


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
        self.names = table_names(fs.name)
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
