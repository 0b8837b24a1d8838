"""Demand forecasting for the store use case: training sets, candidates, metrics, the pyfunc.

Rows are store × product × day, made at the previous day's close; the label is the day's units
sold from the end-of-day report. Training and validation rows are joined to the labels known at
the cut-off (the start of the test window); the one-day gap between training and test is the
feedback delay: a day's label is known when that day closes. Every candidate is a regressor
with `fit`/`predict`; the naive seasonal forecast (same weekday last week) is the baseline.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.pyfunc import PythonModel
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.featureset import FeatureSet
from features.store.policy import Spread
from training import plots
from training.datasets import Splits, Windows
from training.store import connect, table_names

NAIVE = "naive_same_weekday"
"""The baseline forecast: units sold on the same weekday a week before."""
NAIVE_FEATURE = "lag_7"
WARMUP_DAYS = 28
VALIDATION_DAYS = 28
DELAY_DAYS = 1
TEST_DAYS = 28
IMPORTANCE_ROWS = 2_000


def _xgboost(seed: int) -> Any:
    from xgboost import XGBRegressor

    return XGBRegressor(
        n_estimators=400,
        learning_rate=0.05,
        max_depth=6,
        min_child_weight=3,
        subsample=0.8,
        colsample_bytree=0.8,
        objective="reg:tweedie",
        tweedie_variance_power=1.2,
        tree_method="hist",
        n_jobs=1,
        random_state=seed,
    )


def _hist_gradient_boosting(seed: int) -> Any:
    return HistGradientBoostingRegressor(loss="poisson", max_iter=300, learning_rate=0.06, random_state=seed)


def _ridge(seed: int) -> Any:
    return make_pipeline(StandardScaler(), Ridge(alpha=1.0))


CANDIDATES: dict[str, Callable[[int], Any]] = {
    "xgboost": _xgboost,
    "hist_gradient_boosting": _hist_gradient_boosting,
    "ridge": _ridge,
}
"""Candidate regressors by name: two boosted-tree families and a linear baseline.

They fit on one thread (`training.jobs.store` limits scikit-learn's too): the training sets
are tens of thousands of rows, where threads gain little and, on a machine shared with the
live processes, OpenMP threads waiting on each other can make a fit ten times slower.
"""


class ForecastModel(PythonModel):
    """Wraps a fitted regressor: `predict` gives each row's expected units sold (never negative).

    The `spread` of its validation residuals travels with the model, so the scorer turns its
    forecasts into orders exactly as the policy simulation did.
    """

    def __init__(self, estimator: Any, feature_names: tuple[str, ...], spread: Spread | None = None) -> None:
        self.estimator = estimator
        self.feature_names = tuple(feature_names)
        self.spread = spread

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        frame = model_input[list(self.feature_names)].astype("float64")
        return np.clip(np.asarray(self.estimator.predict(frame.to_numpy()), dtype=np.float64), 0.0, None)

    def predict_one(self, values: Any) -> float:
        """Forecast of one row (a sequence in `feature_names` order), for the live scorer.

        XGBoost predicts in place; other estimators skip scikit-learn's input validation. The
        result equals `predict`'s to floating-point rounding.
        """
        x = np.asarray(values, dtype=np.float64).reshape(1, -1)
        if type(self.estimator).__module__.startswith("xgboost"):
            value = self.estimator.get_booster().inplace_predict(x, validate_features=False)[0]
        else:
            import sklearn

            with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
                value = self.estimator.predict(x)[0]
        return max(float(value), 0.0)


def load_splits(db: str | Path, fs: FeatureSet, windows: Windows) -> Splits:
    """Train and validation with the labels known at the cut-off; test with every label."""
    con = connect(db, read_only=True)
    try:
        fit = _labelled(con, fs, windows.train_start, windows.train_end, windows.cutoff)
        test = _labelled(con, fs, windows.test_start, windows.test_end, None)
    finally:
        con.close()
    is_validation = fit["event_time"] >= pd.Timestamp(windows.validation_start)
    data = Splits(
        train=fit[~is_validation].reset_index(drop=True),
        validation=fit[is_validation].reset_index(drop=True),
        test=test,
        windows=windows,
    )
    for name in ("train", "validation", "test"):
        frame = getattr(data, name)
        if len(frame) < 100 or frame["label"].sum() <= 0:
            raise ValueError(
                f"the {name} window holds {len(frame)} labelled rows selling {frame['label'].sum():g} units; "
                "widen the windows or materialize more history"
            )
    return data


def _labelled(con: Any, fs: FeatureSet, start: datetime, end: datetime, known_by: datetime | None) -> pd.DataFrame:
    names = table_names(fs.name)
    known = "" if known_by is None else "WHERE known_at <= $known_by"
    params: dict[str, Any] = {"version": fs.version, "start": start, "end": end}
    if known_by is not None:
        params["known_by"] = known_by
    return con.execute(
        f"""
        WITH known AS (
            SELECT row_id, arg_max(units_sold, known_at) AS label FROM {names["labels"]} {known} GROUP BY 1
        )
        SELECT f.* EXCLUDE (featureset_version), k.label
        FROM {names["features"]} f JOIN known k USING (row_id)
        WHERE f.featureset_version = $version AND f.event_time >= $start AND f.event_time < $end
        ORDER BY f.day, f.row_id
        """,
        params,
    ).df()


def forecast_metrics(y: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, WAPE (absolute error over units sold) and bias (over- or under-forecast share)."""
    error = np.asarray(forecast, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    total = float(np.sum(y))
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "wape": float(np.sum(np.abs(error)) / total) if total else float("nan"),
        "bias": float(np.sum(error) / total) if total else float("nan"),
    }


def forecast_plot(frame: pd.DataFrame, forecast: np.ndarray, naive: np.ndarray, title: str) -> Figure:
    """Units sold per day over the whole chain against the forecast and the naive baseline."""
    daily = (
        pd.DataFrame({"day": frame["day"], "actual": frame["label"], "forecast": forecast, "naive": naive})
        .groupby("day")
        .sum()
    )
    fig = Figure(figsize=plots.FIGSIZE, dpi=plots.DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=13)
    ax.set_ylabel("Units sold, all stores and products", fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.plot(daily.index, daily["actual"], color="black", lw=2, label="actual")
    ax.plot(daily.index, daily["forecast"], color=plots.COLOR, lw=2, label="forecast")
    ax.plot(daily.index, daily["naive"], color=plots.REFERENCE, ls="--", lw=1.5, label="same weekday last week")
    ax.legend(loc="upper left", fontsize=10)
    fig.autofmt_xdate()
    return fig
