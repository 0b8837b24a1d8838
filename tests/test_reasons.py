"""Reason codes: per-row contributions that add up to the model's log-odds, and the top three."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost
from scipy.special import logit
from sklearn.ensemble import RandomForestClassifier

from serving.deciders import FraudDecider, Thresholds
from serving.registry import LoadedModel
from training.candidates import CANDIDATES
from training.pyfunc import REASONS, ProbabilityModel

NAMES = tuple(f"f{i}" for i in range(8))
TELLING = "f5"
"""The feature that makes a payment fraudulent in the synthetic data."""


def _data(missing: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(4_000, len(NAMES)))
    y = (2.5 * x[:, 5] + 0.5 * x[:, 1] * x[:, 2] + rng.normal(size=len(x)) > 3.0).astype(int)
    if missing:
        x[rng.random(x.shape) < 0.05] = np.nan
    return x, y


def _fitted(family: str) -> tuple[ProbabilityModel, np.ndarray]:
    x, y = _data(missing=family != "logistic_regression")
    estimator = CANDIDATES[family](0)
    if family == "xgboost":
        estimator.set_params(n_estimators=60, n_jobs=1)
    if family == "hist_gradient_boosting":
        estimator.set_params(max_iter=60, early_stopping=False)
    return ProbabilityModel(estimator.fit(x, y), NAMES), x[:500]


@pytest.fixture(scope="module", params=["logistic_regression", "xgboost", "hist_gradient_boosting"])
def fitted(request: pytest.FixtureRequest) -> tuple[str, ProbabilityModel, np.ndarray]:
    return (request.param, *_fitted(request.param))


def test_contributions_and_bias_sum_to_the_log_odds(fitted: tuple[str, ProbabilityModel, np.ndarray]) -> None:
    family, model, x = fitted
    contributions = model.contributions(x)
    assert contributions is not None and contributions.shape == (len(x), len(NAMES) + 1)
    log_odds = logit(model.estimator.predict_proba(x)[:, 1])
    tolerance = 1e-4 if family == "xgboost" else 1e-9  # XGBoost sums its leaves in float32
    np.testing.assert_allclose(contributions.sum(axis=1), log_odds, atol=tolerance)
    assert np.ptp(contributions[:, -1]) == 0.0, "the bias is the same for every row"


def test_xgboost_contributions_are_its_own_approximate_ones() -> None:
    model, x = _fitted("xgboost")
    native = model.estimator.get_booster().predict(xgboost.DMatrix(x), pred_contribs=True, approx_contribs=True)
    np.testing.assert_allclose(model.contributions(x), native, atol=1e-4)


def test_logistic_contributions_are_coefficient_times_standardized_input() -> None:
    model, x = _fitted("logistic_regression")
    scaler, regression = model.estimator.steps[0][1], model.estimator.steps[1][1]
    contributions = model.contributions(x)
    assert contributions is not None
    np.testing.assert_allclose(contributions[:, :-1], regression.coef_[0] * scaler.transform(x), atol=1e-12)
    assert contributions[0, -1] == pytest.approx(regression.intercept_[0])


def test_an_obviously_fraudulent_row_is_blamed_on_the_feature_that_made_it_so(
    fitted: tuple[str, ProbabilityModel, np.ndarray],
) -> None:
    _, model, _ = fitted
    row = [0.0] * len(NAMES)
    row[NAMES.index(TELLING)] = 4.0
    explained = model.explained_one(row)
    assert explained is not None and explained[0] > 0.9
    reasons = explained[1]
    assert len(reasons) == REASONS
    assert reasons[0]["feature"] == TELLING and reasons[0]["contribution"] > 1.0
    contributions = [r["contribution"] for r in reasons]
    assert contributions == sorted(contributions, reverse=True)
    assert all(set(r) == {"feature", "contribution"} for r in reasons)


def test_one_row_at_a_time_gives_the_batch_score_and_reasons(fitted: tuple[str, ProbabilityModel, np.ndarray]) -> None:
    _, model, x = fitted
    batch = model.explained(x[:100])
    assert batch is not None
    one = [model.explained_one(row) for row in x[:100].tolist()]
    assert [o[1] for o in one if o] == batch[1] == model.reasons(x[:100])
    assert [o[0] for o in one if o] == batch[0].tolist(), "the live and the batch score of a row are the same number"


def test_the_explained_score_is_the_models_prediction(fitted: tuple[str, ProbabilityModel, np.ndarray]) -> None:
    family, model, x = fitted
    explained = model.explained(x)
    assert explained is not None
    tolerance = 1e-6 if family == "xgboost" else 1e-12  # XGBoost predicts in float32
    np.testing.assert_allclose(explained[0], model.estimator.predict_proba(x)[:, 1], rtol=0, atol=tolerance)
    np.testing.assert_allclose([model.predict_one(row) for row in x[:50].tolist()], explained[0][:50], atol=tolerance)


def test_a_family_without_a_fast_explanation_gives_no_reasons() -> None:
    x, y = _data(missing=False)
    model = ProbabilityModel(RandomForestClassifier(n_estimators=5, random_state=0).fit(x, y), NAMES)
    assert model.contributions(x[:3]) is None and model.reasons(x[:3]) is None
    assert model.explained(x[:3]) is None and model.explained_one(x[0]) is None


def _loaded(model: Any) -> LoadedModel:
    return LoadedModel(
        name="m",
        version="1",
        ref="champion",
        feature_names=NAMES,
        row_features=NAMES,
        policy=Thresholds(0.3, 0.7),
        predict_one=model.predict_one,
        predict_many=lambda rows: model.predict(None, pd.DataFrame(rows, columns=list(NAMES))),
        featureset_version="v",
        explained_one=getattr(model, "explained_one", None),
        explained_many=getattr(model, "explained", None),
    )


def test_every_fraud_decision_carries_its_reasons_alone_or_in_a_batch() -> None:
    model, x = _fitted("xgboost")
    decider, loaded = FraudDecider(), _loaded(model)
    telling = np.nan_to_num(x[:, NAMES.index(TELLING)])
    rows = np.concatenate([x[np.argsort(-telling)[:20]], x[:30]])
    one = [decider.decide(loaded, {}, row) for row in rows.tolist()]
    assert {d["decision"] for d in one} == {"approve", "review", "block"}
    assert all(d["reasons"] == model.reasons(row)[0] and d["reasons"] for d, row in zip(one, rows, strict=True))
    batch = decider.decide_batch(loaded, [{}] * len(rows), rows)
    assert [d["reasons"] for d in batch] == [d["reasons"] for d in one]
    assert [d["score"] for d in batch] == [d["score"] for d in one]
