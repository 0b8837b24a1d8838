"""A training task for any binary use case: a yes/no label per row, an alert from a threshold.

A new use case whose label is yes/no (an account takeover, a churned customer) trains with this
task and decides live with `serving.deciders.BinaryDecider`, so it writes no training or serving
code: its job only says how long its windows are and which feature the baseline ranks by. The
threshold is the one of the best F1 on validation, tagged on every version as `threshold`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from rich.console import RenderableType
from sklearn.metrics import average_precision_score, log_loss, precision_recall_curve, roc_auc_score

from features.featureset import FeatureSet
from training import plots
from training.candidates import CANDIDATES
from training.datasets import Splits, Windows, splits
from training.harness import Column, Evaluation, Predict, Selection, TrainReport, WindowDays, number
from training.pyfunc import ProbabilityModel
from training.store import connect


def best_f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold of the highest F1 on a labelled set (1.0 if it has no positive)."""
    y = np.asarray(y, dtype=np.int8)
    if y.sum() == 0:
        return 1.0
    precision, recall, thresholds = precision_recall_curve(y, np.asarray(scores, dtype=np.float64))
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def binary_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking, calibration and alert metrics; NaN where a set has one class only."""
    y = np.asarray(y, dtype=np.int8)
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    both = 0 < y.sum() < len(y)
    alert = s >= threshold
    caught = int((alert & (y == 1)).sum())
    return {
        "roc_auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "average_precision": float(average_precision_score(y, s)) if both else float("nan"),
        "log_loss": float(log_loss(y, s, labels=[0, 1])),
        "precision_at_threshold": caught / alert.sum() if alert.any() else float("nan"),
        "recall_at_threshold": caught / y.sum() if y.any() else float("nan"),
        "alert_rate": float(alert.mean()),
    }


class BinaryTask:
    """Binary classification of rows; champion by validation average precision.

    The baseline scores a row by one feature (`baseline_feature`), scaled to [0, 1] by its
    largest value in the training window: the rule a team would write without a model.
    """

    kind = "binary_classification"
    selection = Selection("average_precision", higher_is_better=True, heading="val AP")
    importance_scoring = "average_precision"
    threads = None
    noun = "models"

    def __init__(self, fs: FeatureSet, window_days: WindowDays, baseline_feature: str, row_unit: str = "rows") -> None:
        if baseline_feature not in fs.feature_names:
            raise ValueError(f"baseline feature {baseline_feature!r} is not a feature of {fs.name}")
        self.fs = fs
        self.window_days = window_days
        self.baseline_feature = baseline_feature
        self.baseline_name = f"rule_{baseline_feature}"
        self.row_unit = row_unit

    def inputs(self) -> tuple[str, ...]:
        return tuple(self.fs.feature_names)

    def candidates(self, seed: int) -> dict[str, Any]:
        return {name: make(seed) for name, make in CANDIDATES.items()}

    def load(self, db: Path, windows: Windows) -> Splits:
        con = connect(db, read_only=True)
        try:
            return splits(con, self.fs, windows)
        finally:
            con.close()

    def params(self) -> dict[str, Any]:
        return {"baseline_feature": self.baseline_feature, "threshold_rule": "best validation F1"}

    def fit_baseline(self, frame: pd.DataFrame) -> Predict:
        scale = max(float(frame[self.baseline_feature].max()), 1e-12)
        feature = self.baseline_feature

        def predict(rows: pd.DataFrame) -> np.ndarray:
            return np.clip(rows[feature].to_numpy(np.float64) / scale, 0.0, 1.0)

        return predict

    def evaluate(
        self, name: str, validation: Predict, test: Predict, data: Splits, reference: Evaluation | None
    ) -> Evaluation:
        val_scores = np.asarray(validation(data.validation), dtype=np.float64)
        threshold = best_f1_threshold(data.validation["label"].to_numpy(), val_scores)
        test_scores = np.asarray(test(data.test), dtype=np.float64)
        y = data.test["label"].to_numpy()
        return Evaluation(
            validation=binary_metrics(data.validation["label"].to_numpy(), val_scores, threshold),
            test=binary_metrics(y, test_scores, threshold),
            policy={"threshold": repr(threshold)},
            metrics={"threshold": threshold},
            figures={
                "pr_curve.png": plots.pr_curve(y, test_scores, f"{name}: precision-recall (test)"),
                "roc_curve.png": plots.roc_curve(y, test_scores, f"{name}: ROC (test)"),
                "calibration.png": plots.calibration(y, test_scores, f"{name}: calibration (test)"),
            },
        )

    def wrap(self, estimator: Any, evaluation: Evaluation | None) -> PythonModel:
        return ProbabilityModel(estimator, self.inputs())

    def columns(self) -> list[Column]:
        return [
            ("val AP", lambda r: number(r.validation["average_precision"], ".3f")),
            ("test ROC AUC", lambda r: number(r.test["roc_auc"], ".3f")),
            ("test AP", lambda r: number(r.test["average_precision"], ".3f")),
            ("alert from", lambda r: f"{r.evaluation.metrics['threshold']:.3g}"),
            ("test recall", lambda r: number(r.test["recall_at_threshold"], ".3f")),
        ]

    def tables(self, report: TrainReport) -> list[RenderableType]:
        return []
