"""Backtest: score event files with any registered model version, through the same features.

The whole history is replayed (a row's features need every earlier event), but only the rows
whose event time falls in the window asked for are scored. A model input that is not a feature
of the row (the loan model's `offered_rate`, decided after the row) is taken from a value given
for every row (`supplied`, e.g. `--rate`), else from the row's own label in the files (the
loan outcome records the rate that was offered); rows with neither are left out and counted.

With `reasons` (fraud), each scored row also gets the model's reasons, the JSON the live
decision record carries in its `reasons` field, and the score the live scorer gives with them:
both from one pass over the model (`training.pyfunc.ProbabilityModel.explained`), so the live
and the batch decision of a row are the same numbers. Reasons are null, and the score the
model's `predict`, for a model that offers none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import msgspec
import pandas as pd
from mlflow import MlflowClient

from features.featureset import FeatureSet
from features.mapping import Mapping as InputMapping
from training import replay
from training.replay import Source
from training.store import connect


@dataclass
class Backtest:
    scores: pd.DataFrame
    dead_letters: int
    outside_window: int
    """Feature rows the replay made outside the window: not scored."""
    without_inputs: int
    """Rows in the window without a value for an input that is not a feature: not scored."""


def resolve_version(model_uri: str) -> tuple[str, str]:
    """(registered name, version) behind a `models:/name@alias` or `models:/name/version` URI."""
    if not model_uri.startswith("models:/"):
        return model_uri, ""
    ref = model_uri.removeprefix("models:/")
    client = MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return name, str(client.get_model_version_by_alias(name, alias).version)
    name, _, version = ref.partition("/")
    return name, version


def _epoch_ms(value: datetime | None) -> float | None:
    """A window bound in epoch milliseconds; a naive time is taken as UTC."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp() * 1000.0


def score(
    fs: FeatureSet,
    sources: Sequence[Source],
    model_uri: str,
    start: datetime | None = None,
    end: datetime | None = None,
    supplied: Mapping[str, float] | None = None,
    mapping: InputMapping | None = None,
    reasons: bool = False,
) -> Backtest:
    """Scores of the feature rows with event time in [start, end) that the sources produce
    (read through `mapping` where it maps their kind); with `reasons`, a `reasons` column of
    JSON text as well (see the module's doc)."""
    if start is not None and end is not None and start >= end:
        raise ValueError(f"the window to score is empty: --from {start:%Y-%m-%d} is not before --to {end:%Y-%m-%d}")
    model = mlflow.pyfunc.load_model(model_uri)
    name, version = resolve_version(model_uri)
    schema = model.metadata.get_input_schema()
    inputs = schema.input_names() if schema is not None else list(fs.feature_names)
    history = replay.load(fs, sources, mapping=mapping)
    low, high = _epoch_ms(start), _epoch_ms(end)
    rows, labels, outside = [], {}, 0
    for outcome in replay.run(fs, history):
        for label in outcome.labels:
            labels[label[fs.row_id]] = label
        for row in outcome.rows:
            if (low is not None and row["event_time"] < low) or (high is not None and row["event_time"] >= high):
                outside += 1
            else:
                rows.append(row)
    if not rows:
        raise ValueError(
            f"the sources produced no feature rows to score in the window ({outside:,} rows outside it)"
            if outside
            else "the sources produced no feature rows to score"
        )
    frame = pd.DataFrame(rows)
    missing = [column for column in inputs if column not in frame.columns]
    for column in missing:
        if supplied and column in supplied:
            frame[column] = float(supplied[column])
        elif any(column in label for label in labels.values()):
            frame[column] = [labels.get(row_id, {}).get(column) for row_id in frame[fs.row_id]]
        else:
            raise ValueError(
                f"the model takes {column!r}, which is neither a feature of the {fs.name} rows nor in their labels; "
                "give it for every row (the loan rate: --rate)"
            )
    complete = frame[inputs].notna().all(axis=1) if missing else pd.Series(True, index=frame.index)
    frame = frame[complete].reset_index(drop=True)
    scores = pd.DataFrame(
        {
            fs.row_id: frame[fs.row_id],
            "event_time": pd.to_datetime(frame["event_time"], unit="ms"),
            **{column: frame[column].astype("float64") for column in missing},
            "score": model.predict(frame[inputs].astype("float64")) if len(frame) else pd.Series(dtype="float64"),
            "model_name": name,
            "model_version": version,
            "featureset_version": fs.version,
        }
    )
    if reasons:
        explained = _explained(model, frame[inputs])
        found: list[str | None] = [None] * len(frame)
        if explained is not None:
            scores["score"] = explained[0]
            found = [msgspec.json.encode(why).decode() for why in explained[1]]
        scores.insert(scores.columns.get_loc("score") + 1, "reasons", found)
    return Backtest(scores, len(history.dead_letters), outside, int((~complete).sum()))


def _explained(model: Any, inputs: pd.DataFrame) -> tuple[Any, list[list[dict[str, Any]]]] | None:
    """Each row's score and reasons from the model's `explained`; None if the model has none."""
    try:
        explain = getattr(model.unwrap_python_model(), "explained", None)
    except Exception:  # not a python-function model: no reasons
        explain = None
    return explain(inputs.to_numpy(dtype="float64")) if explain is not None and len(inputs) else None


def write_scores(scores: pd.DataFrame, out: Path, use_case: str) -> str:
    """Write to a Parquet/CSV file, or append to `<use_case>_scores` in a DuckDB file."""
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        scores.to_parquet(out, index=False)
        return str(out)
    if suffix == ".csv":
        scores.to_csv(out, index=False)
        return str(out)
    if suffix in (".duckdb", ".db"):
        table = f"{use_case}_scores"
        con = connect(out)
        try:
            con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM scores LIMIT 0")
            con.execute(f"INSERT INTO {table} SELECT * FROM scores")
        finally:
            con.close()
        return f"{out} (table {table})"
    raise ValueError(f"{out}: write scores to a .parquet, .csv or .duckdb file")
