"""Backtest: score an event file with any registered model version, through the same features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from features.featureset import FeatureSet
from training import replay
from training.replay import Source
from training.store import connect


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


def score(fs: FeatureSet, sources: Sequence[Source], model_uri: str) -> tuple[pd.DataFrame, int]:
    """Scores of every feature row the sources produce, and the number of dead letters."""
    model = mlflow.pyfunc.load_model(model_uri)
    name, version = resolve_version(model_uri)
    history = replay.load(fs, sources)
    rows = [row for outcome in replay.run(fs, history) for row in outcome.rows]
    if not rows:
        raise ValueError("the sources produced no feature rows to score")
    frame = pd.DataFrame(rows)
    scores = pd.DataFrame(
        {
            fs.row_id: frame[fs.row_id],
            "event_time": pd.to_datetime(frame["event_time"], unit="ms"),
            "score": model.predict(frame[list(fs.feature_names)]),
            "model_name": name,
            "model_version": version,
            "featureset_version": fs.version,
        }
    )
    return scores, len(history.dead_letters)


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
