"""The DuckDB tables of a use case, defined once for the batch and the stream driver.

`samestream materialize` (training) and the live feature process's DuckDB sink (serving) write
the same `<use case>_features`, `<use case>_labels` and `<use case>_dead_letters` tables, so
they must create them alike. The definition lives in this top-level module because neither
package may hold it for both: serving never imports training, and `features` knows nothing of
DuckDB. It imports only `features` (for the FeatureSet's columns), DuckDB and Arrow.

Rows are keyed by (row id, FeatureSet version), labels by (row id, label time) and dead letters
by (source, position, version), so INSERT OR IGNORE of the same input twice adds nothing.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from features.featureset import FeatureSet

SQL_TYPES = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "ts_ms": "TIMESTAMP"}
"""Column kind of a FeatureSet (`FeatureSet.columns`) -> DuckDB type."""
ARROW_TYPES = {
    "str": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "ts_ms": pa.timestamp("ms"),
}
"""Column kind -> the Arrow type rows are inserted as."""
DEAD_LETTER_COLUMNS = {"source": "str", "position": "str", "kind": "str", "reason": "str", "payload": "str"}


def table_names(use_case: str) -> dict[str, str]:
    """The use case's tables: `features`, `labels`, `dead_letters`."""
    return {
        "features": f"{use_case}_features",
        "labels": f"{use_case}_labels",
        "dead_letters": f"{use_case}_dead_letters",
    }


def ensure_tables(con: duckdb.DuckDBPyConnection, fs: FeatureSet) -> None:
    """Create the use case's feature, label and dead-letter tables if they do not exist yet, and
    add the columns of `fs` a features table made for fewer fields lacks (see `_add_columns`)."""
    names = table_names(fs.name)
    feature_cols = ", ".join(f'"{c}" {SQL_TYPES[t]}' for c, t in fs.columns.items())
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {names['features']} ({feature_cols}, featureset_version VARCHAR, "
        f'PRIMARY KEY ("{fs.row_id}", featureset_version))'
    )
    label_cols = ", ".join(f'"{c}" {SQL_TYPES[t]}' for c, t in fs.label_columns.items())
    time_col = next(c for c, t in fs.label_columns.items() if t == "ts_ms")
    con.execute(
        f'CREATE TABLE IF NOT EXISTS {names["labels"]} ({label_cols}, PRIMARY KEY ("{fs.row_id}", "{time_col}"))'
    )
    dead_cols = ", ".join(f"{c} {SQL_TYPES[t]}" for c, t in DEAD_LETTER_COLUMNS.items())
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {names['dead_letters']} ({dead_cols}, featureset_version VARCHAR, "
        "PRIMARY KEY (source, position, featureset_version))"
    )
    _add_columns(con, fs)


def _add_columns(con: duckdb.DuckDBPyConnection, fs: FeatureSet) -> None:
    """Columns of this FeatureSet that a features table made by one built for fewer fields
    lacks; rows of that other version keep NULL in them (and a training set of a version
    reads only its own columns)."""
    table = table_names(fs.name)["features"]
    have = {row[0] for row in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()}
    for column, kind in fs.columns.items():
        if column not in have:
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {SQL_TYPES[kind]}')
