"""Fit every candidate on a point-in-time training set, evaluate, and register in MLflow.

One MLflow experiment per use case; one run per candidate with the same params, metric names
and plots, so the UI's compare view lines them up; the rule baseline gets a run too. Every
model is registered as a version of one registered model, the best on validation average
precision gets the alias `champion` and the others `challenger-<candidate>`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.metrics import precision_recall_curve

from features.featureset import FeatureSet
from training import plots
from training.candidates import CANDIDATES, model_params
from training.datasets import Splits, Windows, default_windows, splits, time_span
from training.evaluate import CostModel, choose_threshold, evaluate, rule_baseline_scores
from training.pyfunc import ProbabilityModel
from training.store import connect

BLOCK_PRECISION = 0.8
PIP_REQUIREMENTS = ["scikit-learn", "xgboost", "pandas", "numpy"]


@dataclass
class CandidateResult:
    candidate: str
    run_id: str
    version: str | None
    threshold_review: float
    threshold_block: float
    validation: dict[str, float]
    test: dict[str, float]
    fit_seconds: float
    alias: str = ""


@dataclass
class TrainReport:
    experiment: str
    model_name: str
    windows: Windows
    results: list[CandidateResult] = field(default_factory=list)
    baseline: CandidateResult | None = None


def load_splits(db_path: str | Path, fs: FeatureSet, windows: Windows | None = None) -> Splits:
    """Read the point-in-time splits from DuckDB, opening the file read-only."""
    con = connect(db_path, read_only=True)
    try:
        if windows is None:
            windows = default_windows(*time_span(con, fs))
        return splits(con, fs, windows)
    finally:
        con.close()


def dataset_fingerprint(frame: pd.DataFrame, fs: FeatureSet) -> str:
    """Hash of the exact rows and labels a model saw, independent of the DuckDB file."""
    hashed = pd.util.hash_pandas_object(frame[[fs.row_id, *fs.feature_names, "label"]], index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]


def train(
    fs: FeatureSet,
    data: Splits,
    model_name: str,
    candidates: Sequence[str] = tuple(CANDIDATES),
    seed: int = 7,
    cost: CostModel | None = None,
    on_fitted: Callable[[str], None] | None = None,
) -> TrainReport:
    """Fit, evaluate, log and register every candidate; set the aliases."""
    unknown = sorted(set(candidates) - set(CANDIDATES))
    if unknown:
        raise ValueError(f"unknown candidates {unknown}; expected some of {sorted(CANDIDATES)}")
    cost = cost or CostModel()
    names = list(fs.feature_names)
    experiment = mlflow.set_experiment(fs.name)
    report = TrainReport(experiment=experiment.name, model_name=model_name, windows=data.windows)
    fingerprints = {split: dataset_fingerprint(getattr(data, split), fs) for split in ("train", "validation", "test")}
    common = {
        "use_case": fs.name,
        "featureset_version": fs.version,
        **{f"dataset_fingerprint_{k}": v for k, v in fingerprints.items()},
        **data.windows.as_params(),
        "n_train": len(data.train),
        "n_validation": len(data.validation),
        "n_test": len(data.test),
        "cost_review": cost.review_cost,
        "cost_missed_fraud_share": cost.missed_fraud_share,
    }
    tags = {"featureset_version": fs.version, "use_case": fs.name}

    report.baseline = _log_baseline(fs, data, common, tags, cost)
    x_train = data.train[names].to_numpy(dtype="float64")
    y_train = data.train["label"].to_numpy()
    for candidate in candidates:
        with mlflow.start_run(run_name=candidate, tags=tags | {"candidate": candidate}) as run:
            estimator = CANDIDATES[candidate](seed)
            mlflow.log_params(
                common | {"candidate": candidate} | {f"model_{k}": v for k, v in model_params(estimator).items()}
            )
            _log_inputs(fs, data)
            started = time.perf_counter()
            estimator.fit(x_train, y_train)
            fit_seconds = time.perf_counter() - started
            wrapped = ProbabilityModel(estimator, fs.feature_names)
            val_scores = wrapped.predict(None, data.validation)
            test_scores = wrapped.predict(None, data.test)
            review, block = _thresholds(data.validation, val_scores, cost)
            val_metrics = _evaluate(fs, data.validation, val_scores, review, cost)
            test_metrics = _evaluate(fs, data.test, test_scores, review, cost)
            mlflow.log_metrics(
                {f"val_{k}": v for k, v in val_metrics.items()}
                | {f"test_{k}": v for k, v in test_metrics.items()}
                | {"fit_seconds": fit_seconds, "threshold_review": review, "threshold_block": block}
            )
            _log_plots(fs, candidate, estimator, data, test_scores, review)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=wrapped,
                signature=infer_signature(data.validation[names].head(100).astype("float64"), val_scores[:100]),
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=model_name,
            )
            version = str(info.registered_model_version) if info.registered_model_version else None
            if version:
                client = MlflowClient()
                for key, value in (
                    tags
                    | {
                        "candidate": candidate,
                        "threshold_review": review,
                        "threshold_block": block,
                        "run_id": run.info.run_id,
                    }
                ).items():
                    client.set_model_version_tag(model_name, version, key, str(value))
            report.results.append(
                CandidateResult(
                    candidate, run.info.run_id, version, review, block, val_metrics, test_metrics, fit_seconds
                )
            )
        if on_fitted is not None:
            on_fitted(candidate)
    _set_aliases(report)
    return report


def _log_inputs(fs: FeatureSet, data: Splits) -> None:
    for context, frame in (("training", data.train), ("validation", data.validation), ("test", data.test)):
        dataset = mlflow.data.from_pandas(
            frame[[*fs.feature_names, "label"]], targets="label", name=f"{fs.name}-{context}-{fs.version}"
        )
        mlflow.log_input(dataset, context=context)


def _evaluate(
    fs: FeatureSet, frame: pd.DataFrame, scores: np.ndarray, threshold: float, cost: CostModel
) -> dict[str, float]:
    return evaluate(
        frame["label"].to_numpy(),
        scores,
        event_time=frame["event_time"].to_numpy(),
        entity=frame[fs.entity_column].to_numpy(),
        amount=frame["amount_eur"].to_numpy(),
        threshold=threshold,
        cost=cost,
    )


def _thresholds(frame: pd.DataFrame, scores: np.ndarray, cost: CostModel) -> tuple[float, float]:
    """Review at the cost-minimizing score; block where validation precision reaches 80 %."""
    y = frame["label"].to_numpy()
    review = float(choose_threshold(y, scores, frame["amount_eur"].to_numpy(), cost))
    precision, _, cuts = precision_recall_curve(y, scores)
    good = cuts[(precision[:-1] >= BLOCK_PRECISION) & (cuts >= review)]
    block = float(good.min()) if len(good) else max(review, float(np.quantile(scores, 0.9995)))
    return review, max(block, review)


def _log_plots(
    fs: FeatureSet, candidate: str, estimator: Any, data: Splits, scores: np.ndarray, threshold: float
) -> None:
    y = data.test["label"].to_numpy()
    sample = data.validation.head(5000)
    values = plots.importances(
        estimator, list(fs.feature_names), sample[list(fs.feature_names)].to_numpy(), sample["label"].to_numpy()
    )
    figures = {
        "pr_curve.png": plots.pr_curve(y, scores, f"{candidate}: precision-recall (test)"),
        "roc_curve.png": plots.roc_curve(y, scores, f"{candidate}: ROC (test)"),
        "calibration.png": plots.calibration(y, scores, f"{candidate}: calibration (test)"),
        "feature_importance.png": plots.feature_importance(
            list(fs.feature_names), values, f"{candidate}: feature importance"
        ),
        "confusion.png": plots.confusion(y, scores, threshold, f"{candidate}: confusion at review threshold (test)"),
    }
    _log_figures(figures)


def _log_baseline(
    fs: FeatureSet, data: Splits, common: dict[str, Any], tags: dict[str, str], cost: CostModel
) -> CandidateResult:
    """The rule every model must beat: flag payments by amount alone."""
    with mlflow.start_run(run_name="rule_amount_threshold", tags=tags | {"candidate": "rule_amount_threshold"}) as run:
        mlflow.log_params(common | {"candidate": "rule_amount_threshold"})
        val_scores = rule_baseline_scores(data.validation["amount_eur"].to_numpy())
        test_scores = rule_baseline_scores(data.test["amount_eur"].to_numpy())
        review, block = _thresholds(data.validation, val_scores, cost)
        val_metrics = _evaluate(fs, data.validation, val_scores, review, cost)
        test_metrics = _evaluate(fs, data.test, test_scores, review, cost)
        mlflow.log_metrics(
            {f"val_{k}": v for k, v in val_metrics.items()}
            | {f"test_{k}": v for k, v in test_metrics.items()}
            | {"threshold_review": review, "threshold_block": block}
        )
        y = data.test["label"].to_numpy()
        _log_figures(
            {
                "pr_curve.png": plots.pr_curve(y, test_scores, "rule_amount_threshold: precision-recall (test)"),
                "roc_curve.png": plots.roc_curve(y, test_scores, "rule_amount_threshold: ROC (test)"),
                "calibration.png": plots.calibration(y, test_scores, "rule_amount_threshold: calibration (test)"),
                "confusion.png": plots.confusion(
                    y, test_scores, review, "rule_amount_threshold: confusion at review threshold (test)"
                ),
            }
        )
        return CandidateResult(
            "rule_amount_threshold", run.info.run_id, None, review, block, val_metrics, test_metrics, 0.0
        )


def _log_figures(figures: dict[str, Any]) -> None:
    """Plots go to the run's top level: the MLflow compare view only shows artifacts found there."""
    for name, figure in figures.items():
        mlflow.log_figure(figure, name)


def _set_aliases(report: TrainReport) -> None:
    client = MlflowClient()
    ranked = sorted(
        (r for r in report.results if r.version),
        key=lambda r: -np.nan_to_num(r.validation["average_precision"], nan=-1.0),
    )
    for rank, result in enumerate(ranked):
        result.alias = "champion" if rank == 0 else f"challenger-{result.candidate.replace('_', '-')}"
        client.set_registered_model_alias(report.model_name, result.alias, result.version)  # type: ignore[arg-type]
