"""Every candidate, whatever its library, is logged as the same MLflow pyfunc.

The scorer and the shadow harness load `models:/<name>@<alias>` with `mlflow.pyfunc.load_model`
and call `predict(frame)` on a DataFrame of the FeatureSet's feature columns; the result is the
probability of the positive class (fraud, acceptance) per row. One contract, any flavor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class ProbabilityModel(PythonModel):
    """Wraps a fitted estimator with `predict_proba`; predicts the positive-class probability."""

    def __init__(self, estimator: Any, feature_names: tuple[str, ...]) -> None:
        self.estimator = estimator
        self.feature_names = tuple(feature_names)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
        frame = model_input[list(self.feature_names)].astype("float64")
        return self.estimator.predict_proba(frame.to_numpy())[:, 1]

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
            from scipy.special import expit

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
