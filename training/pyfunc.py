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
