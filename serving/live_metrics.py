"""Live scores and labels in DuckDB, and the per-model comparison the shadow harness logs.

Every model's score of every row (the champion's from the decisions topic, the challengers'
from the shadow-scores topic) lands in `<use case>_live_scores`, keyed by (row id, model,
version) so a replayed message adds nothing; labels land in the same `<use case>_labels` table
the batch side uses. Metrics join the two as labels arrive: average precision and precision of
the top k over labelled rows (where a label judges the score: fraud), latency p50/p99 (from
event publication to score, and of the model call alone), agreement of decisions with the
champion's, and error counts. A record's score and decision are what its use case's decider
says they are (`Decider.summary`): a loan offer's P(accept) and rate, a store order's forecast
and order.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from duckdb_tables import ARROW_TYPES, ensure_tables, table_names
from features.featureset import FeatureSet
from serving.records import Item

log = logging.getLogger("samestream.shadow")

SCORE_COLUMNS = {
    "id": "str",
    "model": "str",
    "version": "str",
    "alias": "str",
    "role": "str",
    "score": "float",
    "decision": "str",
    "latency_ms": "float",
    "model_ms": "float",
    "decided_at": "ts_ms",
    "error": "str",
}


def scores_table(use_case: str) -> str:
    return f"{use_case}_live_scores"


def ensure_live_tables(con: duckdb.DuckDBPyConnection, fs: FeatureSet) -> None:
    ensure_tables(con, fs)
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {scores_table(fs.name)} (id VARCHAR, model VARCHAR, version VARCHAR, "
        "alias VARCHAR, role VARCHAR, score DOUBLE, decision VARCHAR, latency_ms DOUBLE, model_ms DOUBLE, "
        "decided_at TIMESTAMP, error VARCHAR, PRIMARY KEY (id, model, version))"
    )


def open_live_db(path: str | Path, fs: FeatureSet) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the live DuckDB file with its tables."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    ensure_live_tables(con, fs)
    return con


class LiveScoreWriter:
    """Writes `score` and `label` items into the live DuckDB tables, one insert per table and batch."""

    def __init__(self, fs: FeatureSet, con: duckdb.DuckDBPyConnection) -> None:
        self.fs = fs
        self.con = con

    def write(self, items: list[Item]) -> None:
        scores: list[dict[str, Any]] = []
        labels: list[dict[str, Any]] = []
        for kind, body in items:
            (scores if kind == "score" else labels).append(body)
        if scores:
            self._insert(scores_table(self.fs.name), SCORE_COLUMNS, scores)
        if labels:
            self._insert(table_names(self.fs.name)["labels"], dict(self.fs.label_columns), labels)

    def _insert(self, table: str, columns: dict[str, str], bodies: list[dict[str, Any]]) -> None:
        frame = pa.table({c: pa.array([b.get(c) for b in bodies], type=ARROW_TYPES[t]) for c, t in columns.items()})
        self.con.register("incoming", frame)
        try:
            self.con.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM incoming").fetchall()
        finally:
            self.con.unregister("incoming")


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    """One model version's live record so far."""

    model: str
    version: str
    role: str
    alias: str
    scored: int
    errors: int
    labelled: int
    positives: int | None
    """Labelled rows with a positive label; None where labels do not rank scores."""
    average_precision: float | None
    precision_at_k: float | None
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    model_p50_ms: float | None
    model_p99_ms: float | None
    agreement: float | None

    def as_mlflow(self) -> dict[str, float]:
        values = {
            "scored": self.scored,
            "errors": self.errors,
            "labelled": self.labelled,
            "positives": self.positives,
            "average_precision": self.average_precision,
            "precision_at_k": self.precision_at_k,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p99_ms": self.latency_p99_ms,
            "model_p50_ms": self.model_p50_ms,
            "model_p99_ms": self.model_p99_ms,
            "agreement_with_champion": self.agreement,
        }
        return {k: float(v) for k, v in values.items() if v is not None}


def label_target(fs: FeatureSet) -> tuple[str, str]:
    """(target column, time column) of the FeatureSet's label rows."""
    time_col = next(c for c, t in fs.label_columns.items() if t == "ts_ms")
    target = next(c for c in fs.label_columns if c not in (fs.row_id, time_col))
    return target, time_col


def compute(con: duckdb.DuckDBPyConnection, fs: FeatureSet, top_k: int, ranked: bool = True) -> list[ModelMetrics]:
    """Every model's metrics over what the live tables hold now; ranking ones only if `ranked`."""
    target, time_col = label_target(fs)
    scores = scores_table(fs.name)
    labels = table_names(fs.name)["labels"]
    summary = con.execute(
        f"""
        WITH y AS (SELECT "{fs.row_id}" AS id, arg_max("{target}", "{time_col}")::INT AS y FROM {labels} GROUP BY 1),
             champ AS (SELECT id, arg_max(decision, decided_at) AS decision FROM {scores}
                       WHERE role = 'champion' AND decision IS NOT NULL GROUP BY id)
        SELECT s.model, s.version, s.role, any_value(s.alias), count(s.score), count(s.error),
               count(y.y) FILTER (WHERE s.score IS NOT NULL), coalesce(sum(y.y) FILTER (WHERE s.score IS NOT NULL), 0),
               quantile_cont(s.latency_ms, 0.5), quantile_cont(s.latency_ms, 0.99),
               quantile_cont(s.model_ms, 0.5), quantile_cont(s.model_ms, 0.99),
               avg((s.decision = champ.decision)::DOUBLE) FILTER (WHERE s.decision IS NOT NULL)
        FROM {scores} s LEFT JOIN y USING (id) LEFT JOIN champ USING (id)
        GROUP BY ALL ORDER BY s.role, s.model, s.version
        """
    ).fetchall()
    out = []
    for model, version, role, alias, scored, errors, labelled, positives, l50, l99, m50, m99, agreement in summary:
        ap, top = None, None
        if ranked:
            pairs = con.execute(
                f"""
                WITH y AS (SELECT "{fs.row_id}" AS id, arg_max("{target}", "{time_col}")::INT AS y
                           FROM {labels} GROUP BY 1)
                SELECT s.score, y.y FROM {scores} s JOIN y USING (id)
                WHERE s.model = ? AND s.version = ? AND s.role = ? AND s.score IS NOT NULL
                """,
                [model, version, role],
            ).fetchnumpy()
            ap, top = ranking_metrics(pairs["score"], pairs["y"], top_k)
        out.append(
            ModelMetrics(
                model,
                version,
                role,
                alias or "",
                int(scored),
                int(errors),
                int(labelled),
                int(positives) if ranked else None,
                ap,
                top,
                l50,
                l99,
                m50,
                m99,
                agreement,
            )
        )
    return out


def ranking_metrics(scores: np.ndarray, y: np.ndarray, top_k: int) -> tuple[float | None, float | None]:
    """Average precision and precision of the `top_k` highest scores (None while undefined)."""
    if len(y) == 0:
        return None, None
    from sklearn.metrics import average_precision_score

    y = np.asarray(y, dtype=np.int64)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    top = float(y[order][: min(top_k, len(y))].mean())
    if y.sum() == 0:
        return None, top
    return float(average_precision_score(y, scores)), top


class MlflowLiveLog:
    """Logs each model's live metrics to one MLflow run per model version, in `<use case>-live`.

    Runs of one experiment share metric names, so the MLflow UI's run comparison shows the
    champion and every challenger side by side. An unreachable MLflow is logged and skipped.
    """

    def __init__(self, tracking_uri: str, use_case: str, stream: str, top_k: int) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.use_case = use_case
        self.stream = stream
        self.top_k = top_k
        self.experiment = f"{use_case}-live"
        self.runs: dict[tuple[str, str, str], str] = {}
        self.step = 0

    def _run_id(self, m: ModelMetrics) -> str:
        key = (m.model, m.version, m.role)
        if key not in self.runs:
            experiment = self.client.get_experiment_by_name(self.experiment)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(self.experiment)
            run = self.client.create_run(
                experiment_id,
                run_name=f"{m.role} {m.model} v{m.version}",
                tags={
                    "model_name": m.model,
                    "model_version": m.version,
                    "role": m.role,
                    "alias": m.alias,
                    "use_case": self.use_case,
                    "stream": self.stream,
                },
            )
            self.client.log_param(run.info.run_id, "top_k", self.top_k)
            self.runs[key] = run.info.run_id
        return self.runs[key]

    def log(self, metrics: list[ModelMetrics]) -> None:
        from mlflow.entities import Metric

        self.step += 1
        now = int(time.time() * 1000)
        try:
            for m in metrics:
                values = [Metric(k, v, now, self.step) for k, v in m.as_mlflow().items()]
                self.client.log_batch(self._run_id(m), metrics=values)
        except Exception as exc:  # metrics are best effort; scoring and recording go on
            log.warning("could not log live metrics to MLflow: %s: %s", type(exc).__name__, exc)

    def close(self) -> None:
        for run_id in self.runs.values():
            try:
                self.client.set_terminated(run_id, "FINISHED")
            except Exception as exc:
                log.warning("could not close MLflow run %s: %s", run_id, exc)
