"""The candidate models: one scikit-learn interface, three families.

Each candidate is a plain estimator with `fit` and `predict_proba`, so training, evaluation and
the pyfunc wrapper treat them alike. Imbalance is left to the models' own weighting; class
probabilities stay calibrated enough for the cost-based threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier


def logistic_regression(seed: int) -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def hist_gradient_boosting(seed: int) -> Any:
    return HistGradientBoostingClassifier(
        max_iter=300,
        learning_rate=0.08,
        max_leaf_nodes=31,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.1,
        random_state=seed,
    )


def xgboost(seed: int) -> Any:
    return XGBClassifier(
        n_estimators=400,
        learning_rate=0.06,
        max_depth=6,
        subsample=0.9,
        colsample_bytree=0.8,
        min_child_weight=2.0,
        tree_method="hist",
        n_jobs=2,
        random_state=seed,
        eval_metric="aucpr",
    )


CANDIDATES: dict[str, Callable[[int], Any]] = {
    "logistic_regression": logistic_regression,
    "hist_gradient_boosting": hist_gradient_boosting,
    "xgboost": xgboost,
}


def model_params(estimator: Any) -> dict[str, Any]:
    """The estimator's own settings (last pipeline step), for MLflow params."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return {k: v for k, v in final.get_params().items() if isinstance(v, int | float | str | bool) or v is None}
