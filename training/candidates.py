"""The candidate models: one scikit-learn interface, three families.

Each candidate is a plain estimator with `fit` and `predict_proba`, so training, evaluation and
the pyfunc wrapper treat them alike. By default imbalance is left to the models' own weighting,
so class probabilities stay calibrated enough for the cost-based threshold; each candidate's
search space (`SEARCH_SPACES`, for `training.tuning`) also tries class weights, and the
thresholds are chosen on the validation scores of whatever configuration wins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
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


def _logistic_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "logisticregression__C": trial.suggest_float("C", 1e-3, 1e2, log=True),
        "logisticregression__class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
    }


def _hgb_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 96, log=True),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 10, 200, log=True),
        "l2_regularization": trial.suggest_float("l2_regularization", 1e-3, 10.0, log=True),
        "class_weight": trial.suggest_categorical("class_weight", [None, "balanced"]),
    }


def _xgboost_space(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 800, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
        "subsample": trial.suggest_float("subsample", 0.6, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 20.0, log=True),
        "scale_pos_weight": trial.suggest_categorical("scale_pos_weight", [1.0, 3.0, 10.0, 30.0]),
    }


SEARCH_SPACES: dict[str, Callable[[optuna.Trial], dict[str, Any]]] = {
    "logistic_regression": _logistic_space,
    "hist_gradient_boosting": _hgb_space,
    "xgboost": _xgboost_space,
}
"""Each candidate's hyperparameters to search, as `set_params` arguments of its estimator."""


def model_params(estimator: Any) -> dict[str, Any]:
    """The estimator's own settings (last pipeline step), for MLflow params."""
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return {k: v for k, v in final.get_params().items() if isinstance(v, int | float | str | bool) or v is None}
