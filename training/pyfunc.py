"""Every candidate, whatever its library, is logged as the same MLflow pyfunc.

The scorer and the shadow harness load `models:/<name>@<alias>` with `mlflow.pyfunc.load_model`
and call `predict(frame)` on a DataFrame of the FeatureSet's feature columns; the result is the
probability of the positive class (fraud, acceptance) per row. One contract, any flavor.
`contributions` and `reasons` say why: which inputs moved a row's log-odds, and by how much.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from numpy.typing import NDArray
from scipy.special import expit

REASONS = 3
"""How many features a decision's reasons name."""


class ProbabilityModel(PythonModel):
    """Wraps a fitted estimator with `predict_proba`; predicts the positive-class probability."""

    def __init__(self, estimator: Any, feature_names: tuple[str, ...]) -> None:
        self.estimator = estimator
        self.feature_names = tuple(feature_names)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        frame = model_input[list(self.feature_names)].astype("float64")
        return self.estimator.predict_proba(frame.to_numpy())[:, 1]

    def contributions(self, rows: Any) -> NDArray[np.float64] | None:
        """Each input's contribution to the log-odds of the positive class, per row.

        `rows` is (n, len(feature_names)) in `feature_names` order; the result is (n,
        len(feature_names) + 1), the last column the bias, and each row sums to the model's
        log-odds for it. A logistic regression (alone or after StandardScalers) gives
        coefficient × (standardized input − standardized training mean): exact. A tree ensemble
        (XGBoost, hist gradient boosting) gives each tree's change of expected value along the
        row's path to the feature split on (Saabas, what XGBoost's `approx_contribs` computes):
        it sums exactly to the log-odds, costs a few table look-ups per tree, and is used
        instead of exact TreeSHAP, which costs milliseconds per row on the live path. None for
        any other estimator: it has no fast explanation.
        """
        explain = self.__dict__.get("_explain")
        if explain is None:
            explain = self.__dict__["_explain"] = _explainer(self.estimator) or _unexplained
        return explain(np.asarray(rows, dtype=np.float64).reshape(-1, len(self.feature_names)))

    def explained(self, rows: Any) -> tuple[NDArray[np.float64], list[list[dict[str, Any]]]] | None:
        """Each row's probability and its reasons, from one pass over the model; None if the model
        has no `contributions`.

        The probability is the sigmoid of the contributions' sum (the log-odds), so a decision's
        reasons add up to its score exactly; it equals `predict`'s to floating-point rounding
        (XGBoost's own float32 arithmetic: within 1e-6). The reasons are the `REASONS` inputs
        that pushed the row most toward the positive class, as `{"feature": name,
        "contribution": log-odds, rounded}`, largest first (negative when nothing pushed toward
        it). One row is `rows` of one row: the live path and the batch path are one computation,
        so they give the same score and reasons for the same row.
        """
        values = self.contributions(rows)
        if values is None:
            return None
        names = self.feature_names
        features = values[:, :-1]
        top = np.argsort(-features, axis=1, kind="stable")[:, :REASONS]
        reasons = [
            [{"feature": names[j], "contribution": round(float(row[j]), 3)} for j in order]
            for row, order in zip(features, top, strict=True)
        ]
        return expit(values.sum(axis=1)), reasons

    def reasons(self, rows: Any) -> list[list[dict[str, Any]]] | None:
        """`explained`'s reasons alone."""
        explained = self.explained(rows)
        return None if explained is None else explained[1]

    def explained_one(self, values: Any) -> tuple[float, list[dict[str, Any]]] | None:
        """`explained` of one row (a sequence in `feature_names` order): the live scorer's path.

        One walk of the trees gives both the score and its reasons, where predicting, then
        explaining, costs two passes, and XGBoost's own one-row prediction alone (about 250 µs
        a call for 400 trees, most of it fixed cost) costs more than the walk.
        """
        explained = self.explained(values)
        return None if explained is None else (float(explained[0][0]), explained[1][0])

    def predict_one(self, values: Any) -> float:
        """Positive-class probability of one row (a sequence in `feature_names` order).

        The live scorer scores one event at a time, where `predict`'s DataFrame and
        scikit-learn's input validation cost far more than the model itself. So the first call
        builds a direct path, kept on this instance: a logistic regression (alone or after
        StandardScalers) becomes one dot product, XGBoost predicts in place, and any other
        estimator calls `predict_proba` with validation switched off. Results equal
        `predict`'s to floating-point rounding.
        """
        fast = self.__dict__.get("_fast_path")
        if fast is None:
            import sklearn

            steps = [step for _, step in self.estimator.steps] if hasattr(self.estimator, "steps") else [self.estimator]
            *before, final = steps
            kind = type(final).__module__.split(".")[0], type(final).__name__
            scalers = [(s.mean_, s.scale_) for s in before if type(s).__name__ == "StandardScaler"]
            if kind == ("sklearn", "LogisticRegression") and len(final.classes_) == 2 and len(scalers) == len(before):
                coef, intercept = final.coef_[0], float(final.intercept_[0])

                def fast(row: Any) -> float:
                    x = np.asarray(row, dtype=np.float64)
                    for mean, scale in scalers:  # None: a centring or scaling the scaler skips
                        x = x - mean if mean is not None else x
                        x = x / scale if scale is not None else x
                    return float(expit(x @ coef + intercept))

            elif kind[0] == "xgboost" and not before:
                booster = final.get_booster()
                booster.set_param({"nthread": 1})  # one row: threads only add wake-ups
                best = getattr(booster, "best_iteration", None)
                rounds = (0, best + 1) if best is not None else (0, 0)

                def fast(row: Any) -> float:
                    x = np.asarray(row, dtype=np.float64).reshape(1, -1)
                    return float(booster.inplace_predict(x, iteration_range=rounds, validate_features=False)[0])

            else:
                estimator = self.estimator

                def fast(row: Any) -> float:
                    x = np.asarray(row, dtype=np.float64).reshape(1, -1)
                    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
                        return float(estimator.predict_proba(x)[0, 1])

            self.__dict__["_fast_path"] = fast
        return fast(values)


Explain = Callable[[NDArray[np.float64]], NDArray[np.float64] | None]


def _unexplained(rows: NDArray[np.float64]) -> None:
    return None


def _explainer(estimator: Any) -> Explain | None:
    """The contributions function of a fitted estimator, or None if its family has none."""
    steps = [step for _, step in estimator.steps] if hasattr(estimator, "steps") else [estimator]
    *before, final = steps
    family = type(final).__module__.split(".")[0], type(final).__name__
    if family == ("sklearn", "LogisticRegression"):
        scalers = [s for s in before if type(s).__name__ == "StandardScaler"]
        if len(final.classes_) != 2 or len(scalers) != len(before):
            return None
        return _linear(final.coef_[0], float(final.intercept_[0]), [(s.mean_, s.scale_) for s in scalers])
    if before:
        return None
    if family[0] == "xgboost":
        return _xgboost_trees(final)
    if family == ("sklearn", "HistGradientBoostingClassifier"):
        return _hist_trees(final)
    return None


def _linear(coef: NDArray[np.float64], intercept: float, scalers: list[tuple[Any, Any]]) -> Explain:
    """coef × (z − z̄), z the standardized input and z̄ the training mean standardized (0 when
    the first scaler centres): a linear model's log-odds split exactly by input."""

    def standardize(x: NDArray[np.float64]) -> NDArray[np.float64]:
        for mean, scale in scalers:  # None: a centring or scaling the scaler skips
            x = x - mean if mean is not None else x
            x = x / scale if scale is not None else x
        return x

    centre = standardize(np.asarray(scalers[0][0], dtype=np.float64)) if scalers and scalers[0][0] is not None else 0.0
    bias = intercept + float(np.sum(coef * centre))

    def explain(rows: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.empty((len(rows), len(coef) + 1))
        out[:, :-1] = coef * (standardize(rows) - centre)
        out[:, -1] = bias
        return out

    return explain


class _Trees:
    """A tree ensemble as padded arrays (tree × node), walked for all trees at once, and each
    node's path from its root: the feature of every split on the way and the change of
    cover-weighted mean value it made (so a leaf's changes sum to its value minus its root's).
    A row's contributions are its leaves' changes summed by feature (one `bincount`), the bias
    the roots' means plus the model's base."""

    def __init__(
        self,
        trees: list[dict[str, NDArray[Any]]],
        n_features: int,
        base: float,
        dtype: type,
        left_if_equal: bool,
    ) -> None:
        size = max(len(t["left"]) for t in trees)
        self.dtype = dtype
        self.left_if_equal = left_if_equal
        self.n_features = n_features

        def padded(key: str, fill: Any, kind: Any) -> NDArray[Any]:
            out = np.full((len(trees), size), fill, dtype=kind)
            for i, tree in enumerate(trees):
                out[i, : len(tree[key])] = tree[key]
            return out

        left, right = padded("left", -1, np.int64), padded("right", -1, np.int64)
        feature = padded("feature", 0, np.int64)
        threshold = padded("threshold", 0.0, dtype)
        default_left = padded("default_left", False, bool)
        paths = [_paths(tree, _node_means(tree["left"], tree["right"], tree["value"], tree["cover"])) for tree in trees]
        self.depth = max(len(path) for tree_paths, _ in paths for path in tree_paths)
        # padding steps credit nothing to the bias column
        path_feature = np.full((len(trees), size, max(self.depth, 1)), n_features, dtype=np.int64)
        path_change = np.zeros((len(trees), size, max(self.depth, 1)))
        for i, (tree_paths, _) in enumerate(paths):
            for node, path in enumerate(tree_paths):
                if path:
                    path_feature[i, node, : len(path)] = [f for f, _ in path]
                    path_change[i, node, : len(path)] = [c for _, c in path]
        self.path_feature = path_feature.reshape(len(trees) * size, -1)
        self.path_change = path_change.reshape(len(trees) * size, -1)
        self.base = base + sum(root for _, root in paths)
        # flat node numbers (tree * size + node); a leaf (or padding) leads to itself
        self.roots = np.arange(len(trees)) * size
        here = self.roots[:, None] + np.arange(size)
        to_left = np.where(left < 0, here, left + self.roots[:, None]).ravel()
        to_right = np.where(left < 0, here, right + self.roots[:, None]).ravel()
        self.child = np.stack([to_right, to_left], axis=1).ravel()  # [2 * node + went left]
        self.feature = feature.ravel()
        self.threshold = threshold.ravel()
        self.default_left = default_left.ravel()

    def __call__(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        x: NDArray[Any] = rows.astype(self.dtype)
        out = np.empty((len(x), self.n_features + 1))
        for start in range(0, len(x), 256):  # bounds the (rows, trees, path) gather
            chunk = x[start : start + 256]
            flat = chunk.ravel()
            gaps = bool(np.isnan(flat).any())
            at = (np.arange(len(chunk)) * self.n_features)[:, None]
            node = np.broadcast_to(self.roots, (len(chunk), len(self.roots)))
            for _ in range(self.depth):
                value = flat[at + self.feature[node]]
                threshold = self.threshold[node]
                left = value <= threshold if self.left_if_equal else value < threshold
                if gaps:
                    left = np.where(np.isnan(value), self.default_left[node], left)
                node = self.child[2 * node + left]
            width = self.n_features + 1
            at_row = (np.arange(len(chunk)) * width)[:, None, None]
            credited = np.bincount(
                (self.path_feature[node] + at_row).ravel(),
                weights=self.path_change[node].ravel(),
                minlength=len(chunk) * width,
            )
            out[start : start + len(chunk)] = credited.reshape(len(chunk), width)
        out[:, -1] += self.base
        return out


def _paths(arrays: dict[str, NDArray[Any]], mean: NDArray[np.float64]) -> tuple[list[list[tuple[int, float]]], float]:
    """Every node's path from the root as (split feature, change of mean value) steps, and the
    root's mean value."""
    paths: list[list[tuple[int, float]]] = [[] for _ in range(len(arrays["left"]))]
    stack = [0]
    while stack:
        node = stack.pop()
        for child in (int(arrays["left"][node]), int(arrays["right"][node])):
            if child >= 0:
                paths[child] = [*paths[node], (int(arrays["feature"][node]), float(mean[child] - mean[node]))]
                stack.append(child)
    return paths, float(mean[0])


def _node_means(
    left: NDArray[np.int64], right: NDArray[np.int64], value: NDArray[np.float64], cover: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Every node's expected value: its leaves' values weighted by their cover (training weight)."""
    mean = np.asarray(value, dtype=np.float64).copy()

    def fill(node: int) -> float:
        if left[node] >= 0:
            a, b = int(left[node]), int(right[node])
            fill(a), fill(b)
            total = float(cover[a] + cover[b])
            mean[node] = (cover[a] * mean[a] + cover[b] * mean[b]) / total if total > 0 else mean[a]
        return float(mean[node])

    fill(0)
    return mean


def _xgboost_trees(model: Any) -> Explain | None:
    """A binary XGBoost tree model's contributions (`approx_contribs` semantics, float32 splits)."""
    import json

    booster = model.get_booster()
    learner = json.loads(booster.save_raw("json"))["learner"]
    gbm = learner["gradient_booster"]
    if gbm.get("name") != "gbtree" or int(learner["learner_model_param"]["num_class"]) > 1:
        return None
    raw = gbm["model"]["trees"]
    best = getattr(booster, "best_iteration", None)
    raw = raw[: best + 1] if best is not None else raw
    if any(any(t["split_type"]) for t in raw):
        return None  # categorical splits
    trees = [
        {
            "left": np.asarray(t["left_children"]),
            "right": np.asarray(t["right_children"]),
            "feature": np.asarray(t["split_indices"]),
            "threshold": np.asarray(t["split_conditions"], dtype=np.float32),
            "default_left": np.asarray(t["default_left"], dtype=bool),
            "value": np.asarray(t["split_conditions"], dtype=np.float64),
            "cover": np.asarray(t["sum_hessian"], dtype=np.float64),
        }
        for t in raw
    ]
    n_features = int(learner["learner_model_param"]["num_feature"])
    walk = _Trees(trees, n_features, 0.0, np.float32, left_if_equal=False)
    probe = np.zeros((1, n_features))
    rounds = (0, best + 1) if best is not None else (0, 0)
    margin = float(booster.inplace_predict(probe, iteration_range=rounds, predict_type="margin")[0])
    walk.base += margin - float(walk(probe)[0].sum())
    return walk


def _hist_trees(model: Any) -> Explain | None:
    """A binary HistGradientBoostingClassifier's contributions (numeric splits only)."""
    if getattr(model, "n_trees_per_iteration_", 1) != 1:
        return None
    nodes = [predictors[0].nodes for predictors in model._predictors]
    if any(n["is_categorical"].any() for n in nodes):
        return None
    trees = [
        {
            "left": np.where(n["is_leaf"] == 1, -1, n["left"].astype(np.int64)),
            "right": np.where(n["is_leaf"] == 1, -1, n["right"].astype(np.int64)),
            "feature": n["feature_idx"],
            "threshold": n["num_threshold"],
            "default_left": n["missing_go_to_left"].astype(bool),
            "value": n["value"],
            "cover": n["count"].astype(np.float64),
        }
        for n in nodes
    ]
    return _Trees(trees, model.n_features_in_, float(model._baseline_prediction.ravel()[0]), np.float64, True)
