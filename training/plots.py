"""Figures of a scored set, logged as MLflow artifacts next to the metrics.

Figures are built on `matplotlib.figure.Figure` with an Agg canvas rather than through pyplot,
so no global backend or figure registry is touched and they render the same in a headless
training job and in a notebook. They are 800×600 pixels at the default DPI; the caller logs
them and closes them. A payment raises an alert when `score >= threshold`, as in
`training.evaluate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.inspection import permutation_importance
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.metrics import roc_curve as _roc_points
from sklearn.pipeline import Pipeline
from sklearn.utils import resample

FIGSIZE = (8.0, 6.0)
DPI = 100
COLOR = "#1f5fa8"
REFERENCE = "#9a9a9a"
PERMUTATION_ROWS = 5_000
SEED = 0


def _figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=13)
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.tick_params(labelsize=10)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _binary(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).astype(np.int8)


def _undefined(ax: Axes, why: str) -> None:
    """Say on the figure why there is no curve, so a degenerate split still logs a figure."""
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=12, transform=ax.transAxes)


def pr_curve(y: np.ndarray, s: np.ndarray, title: str) -> Figure:
    """Precision against recall, with the prevalence a random ranking would reach."""
    y = _binary(y)
    fig, ax = _figure(title, "Recall", "Precision")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    if not 0 < y.sum() < len(y):
        _undefined(ax, "undefined: only one class present")
        return fig
    precision, recall, _ = precision_recall_curve(y, s)
    ap = average_precision_score(y, s)
    ax.step(recall, precision, where="post", color=COLOR, lw=2, label=f"model (AP = {ap:.3f})")
    ax.axhline(y.mean(), color=REFERENCE, ls="--", label=f"random (prevalence = {y.mean():.4f})")
    ax.legend(loc="upper right", fontsize=10)
    return fig


def roc_curve(y: np.ndarray, s: np.ndarray, title: str) -> Figure:
    """True against false positive rate, with the chance diagonal."""
    y = _binary(y)
    fig, ax = _figure(title, "False positive rate", "True positive rate")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    if not 0 < y.sum() < len(y):
        _undefined(ax, "undefined: only one class present")
        return fig
    fpr, tpr, _ = _roc_points(y, s)
    auc = roc_auc_score(y, s)
    ax.plot(fpr, tpr, color=COLOR, lw=2, label=f"model (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color=REFERENCE, ls="--", label="chance")
    ax.legend(loc="lower right", fontsize=10)
    return fig


def calibration(y: np.ndarray, s: np.ndarray, title: str, n_bins: int = 10) -> Figure:
    """Reliability diagram: observed fraud rate against mean score per score-quantile bin.

    Quantile bins hold equal numbers of payments, so each point is equally well estimated even
    though most scores of a rare class sit near zero; the axes zoom to the occupied range for
    the same reason.
    """
    y = _binary(y)
    s = np.asarray(s, dtype=np.float64)
    fig, ax = _figure(title, "Mean predicted probability", "Observed fraud rate")
    if len(y) == 0:
        _undefined(ax, "undefined: no payments")
        return fig
    edges = np.unique(np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1)))
    bins = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(bins)
    occupied = counts > 0
    mean_score = np.bincount(bins, weights=s)[occupied] / counts[occupied]
    fraud_rate = np.bincount(bins, weights=y)[occupied] / counts[occupied]
    top = max(float(mean_score.max()), float(fraud_rate.max()), 1e-6) * 1.05
    ax.plot([0, top], [0, top], color=REFERENCE, ls="--", label="perfectly calibrated")
    ax.plot(mean_score, fraud_rate, "o-", color=COLOR, lw=2, label=f"model ({int(occupied.sum())} bins)")
    ax.set_xlim(0.0, top)
    ax.set_ylim(0.0, top)
    ax.legend(loc="upper left", fontsize=10)
    return fig


def feature_importance(names: list[str] | np.ndarray, values: np.ndarray, title: str, top: int = 25) -> Figure:
    """The `top` most important features as horizontal bars, the largest at the top."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")[::-1][:top]
    fig, ax = _figure(title, "Importance", "")
    ax.barh(np.arange(len(order)), values[order], color=COLOR)
    ax.set_yticks(np.arange(len(order)), [str(names[i]) for i in order], fontsize=9)
    ax.invert_yaxis()
    ax.grid(False, axis="y")
    ax.axvline(0.0, color="black", lw=0.8)
    return fig


def confusion(y: np.ndarray, s: np.ndarray, threshold: float, title: str) -> Figure:
    """Counts of genuine and fraud payments with and without an alert at `threshold`.

    Cells are shaded by their share of the row, so the fraud row stays visible next to the far
    larger genuine row.
    """
    y = _binary(y)
    alert = (np.asarray(s, dtype=np.float64) >= threshold).astype(np.int8)
    counts = np.zeros((2, 2), dtype=np.int64)
    np.add.at(counts, (y, alert), 1)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros((2, 2)), where=rows > 0)
    fig, ax = _figure(title, "Decision", "Actual")
    ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.grid(False)
    ax.set_xticks([0, 1], ["no alert", f"alert (score ≥ {threshold:.3g})"])
    ax.set_yticks([0, 1], ["genuine", "fraud"])
    for (row, col), count in np.ndenumerate(counts):
        ax.text(
            col,
            row,
            f"{count:,}\n({shares[row, col]:.1%} of row)",
            ha="center",
            va="center",
            fontsize=13,
            color="white" if shares[row, col] > 0.5 else "black",
        )
    return fig


def importances(
    estimator: Any,
    feature_names: list[str],
    X: Any,
    y: Any,
    scoring: str = "average_precision",
    stratify: bool = True,
) -> np.ndarray:
    """One importance per feature name, from the model itself when it has them.

    Native importances are `feature_importances_` (trees, boosting) or |coef_| (linear models,
    meaningful when features are scaled, as in a Pipeline), read off a Pipeline's last step.
    When there are none, or they do not line up with `feature_names` (a step changed the
    columns), the whole estimator is scored by permutation importance in `scoring` (a
    scikit-learn scorer name) on a sample of at most 5,000 rows, stratified by class for a
    classifier, seeded, so the figure is reproducible and cheap.
    """
    model = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    n_features = len(feature_names)
    native = getattr(model, "feature_importances_", None)
    if native is None and getattr(model, "coef_", None) is not None:
        coef = np.abs(np.asarray(model.coef_, dtype=np.float64))
        native = coef.reshape(-1, coef.shape[-1]).mean(axis=0)
    if native is not None and np.size(native) == n_features:
        return np.asarray(native, dtype=np.float64).ravel()

    y = np.asarray(y)
    if len(y) > PERMUTATION_ROWS:
        X, y = resample(
            X, y, n_samples=PERMUTATION_ROWS, replace=False, stratify=y if stratify else None, random_state=SEED
        )
    result = permutation_importance(estimator, X, y, scoring=scoring, n_repeats=3, random_state=SEED)
    return np.asarray(result.importances_mean, dtype=np.float64)
