"""How much a pricing policy is worth per application: by the ground truth and estimated offline.

A policy gives each application a rate. Its value is the mean expected value per application
(`features.loan.pricing.expected_value`). Two ways to measure it:

* truth: the simulator knows each application's true acceptance curve and PD, so any rate can
  be valued exactly. Only a simulation has this; it is what the tests assert on.
* offline: what a bank could compute from its own logs, with the doubly robust estimator. The
  model's own P(accept | rate) values every application at the policy's rate; where the logged
  rate equals the policy's rate, the logged outcome corrects that value, weighted by
  1 / `rate_propensity` (the historical rates were drawn at random with that probability). Where
  the propensities are right the correction removes the model's bias; where the policy leaves
  the historical range (no logged offer can match) the estimate is the model's alone. The
  credit loss is priced with the master-scale PD: defaults are not yet observed when offers are
  evaluated.

Fixed-rate policies (one rate for everyone, the best one in hindsight) are the naive baseline;
the historical randomized policy and, with the truth, the oracle (true curve and true PD)
bracket what a model can reach.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from features.loan.pricing import PricingPolicy, choose_rates, expected_loss, expected_value, grid_inputs, margin

Predict = Callable[[np.ndarray], np.ndarray]
"""Model inputs (n, d + 1), the rate last -> P(accept) per row."""
CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class Truth:
    """The simulator's ground truth, aligned with the rows of one split."""

    intercept: np.ndarray
    slope: np.ndarray
    pd_annual: np.ndarray

    def acceptance(self, rates: np.ndarray) -> np.ndarray:
        """True P(accept) of each application at each rate, shape (n, len(rates))."""
        return 1.0 / (1.0 + np.exp(-(self.intercept[:, None] + self.slope[:, None] * rates[None, :])))

    def accept_at(self, rates: np.ndarray) -> np.ndarray:
        """True P(accept) of each application at its own rate."""
        return 1.0 / (1.0 + np.exp(-(self.intercept + self.slope * rates)))


def load_truth(path: Path) -> pd.DataFrame:
    """The simulator's `ground_truth.parquet`, indexed by application id."""
    return pq.read_table(path).to_pandas().set_index("application_id")


def align_truth(truth: pd.DataFrame, frame: pd.DataFrame) -> Truth:
    """Truth for the applications of `frame`, in its order; every application must be known."""
    rows = truth.reindex(frame["application_id"])
    if rows["true_pd_annual"].isna().any():
        missing = int(rows["true_pd_annual"].isna().sum())
        raise ValueError(f"the ground truth lacks {missing} of {len(frame)} applications: was it simulated with them?")
    return Truth(
        rows["accept_logit_intercept"].to_numpy(np.float64),
        rows["accept_logit_rate"].to_numpy(np.float64),
        rows["true_pd_annual"].to_numpy(np.float64),
    )


def acceptance_matrix(predict: Predict, features: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """P(accept) of each application (rows of `features`) at each rate, shape (n, len(rates))."""
    per_chunk = max(1, CHUNK_ROWS // len(rates))
    parts = [
        np.asarray(predict(grid_inputs(features[i : i + per_chunk], rates)), dtype=np.float64).reshape(-1, len(rates))
        for i in range(0, len(features), per_chunk)
    ]
    return np.concatenate(parts) if parts else np.empty((0, len(rates)))


def _terms(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        frame["amount_eur"].to_numpy(np.float64),
        frame["term_months"].to_numpy(np.float64),
        frame["pd_annual"].to_numpy(np.float64),
    )


def _loan_value(rates: np.ndarray, frame: pd.DataFrame, policy: PricingPolicy) -> np.ndarray:
    """What each loan is worth if taken at `rates`, with the master-scale PD (the bank's view)."""
    amount, term, pd_annual = _terms(frame)
    return margin(rates, amount, term, policy.funding_rate) - expected_loss(pd_annual, amount, term, policy.lgd)


def truth_value(rates: np.ndarray, frame: pd.DataFrame, truth: Truth, policy: PricingPolicy) -> np.ndarray:
    """True expected value of offering each application its rate."""
    amount, term, _ = _terms(frame)
    return expected_value(truth.accept_at(rates), rates, amount, term, truth.pd_annual, policy)


def offline_value(
    rates: np.ndarray,
    accept_at_rates: np.ndarray,
    accept_at_logged: np.ndarray,
    frame: pd.DataFrame,
    policy: PricingPolicy,
) -> tuple[float, int]:
    """Doubly robust estimate of the value per application, and how many logged offers matched.

    `accept_at_rates` and `accept_at_logged` are the model's P(accept) at the policy's rates and
    at the rates offered historically.
    """
    logged = frame["offered_rate"].to_numpy(np.float64)
    propensity = frame["rate_propensity"].to_numpy(np.float64)
    match = np.isclose(logged, rates, rtol=0.0, atol=1e-9) & np.isfinite(propensity) & (propensity > 0)
    logged_value = _loan_value(logged, frame, policy)
    residual = (frame["label"].to_numpy(np.float64) - accept_at_logged) * logged_value
    correction = np.where(match, residual / np.where(match, propensity, 1.0), 0.0)
    return float((accept_at_rates * _loan_value(rates, frame, policy) + correction).mean()), int(match.sum())


@dataclass(frozen=True)
class Baselines:
    """Values per application of the policies a model is compared with, on one split."""

    best_fixed_rate_truth: float
    best_fixed_truth: float
    historical_truth: float
    oracle_truth: float
    historical_offline: float
    """The historical policy's realized value: its own outcomes, no estimate needed."""
    fixed_truth: np.ndarray
    """True value of every grid rate as a fixed rate (for the policy plot)."""

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if not isinstance(v, np.ndarray) and np.isfinite(v)}


def baselines(frame: pd.DataFrame, truth: Truth | None, policy: PricingPolicy) -> Baselines:
    """The best fixed rate in hindsight, the historical policy and the oracle."""
    grid = policy.grid()
    amount, term, _ = _terms(frame)
    historical = frame["offered_rate"].to_numpy(np.float64)
    historical_offline = float((frame["label"].to_numpy(np.float64) * _loan_value(historical, frame, policy)).mean())
    if truth is None:
        nan = float("nan")
        return Baselines(nan, nan, nan, nan, historical_offline, np.full(len(grid), nan))
    accept = truth.acceptance(grid)
    fixed = expected_value(accept, grid[None, :], amount[:, None], term[:, None], truth.pd_annual[:, None], policy)
    fixed = fixed.mean(axis=0)
    best = int(np.argmax(fixed))
    return Baselines(
        best_fixed_rate_truth=float(grid[best]),
        best_fixed_truth=float(fixed[best]),
        historical_truth=float(truth_value(historical, frame, truth, policy).mean()),
        oracle_truth=float(choose_rates(accept, amount, term, truth.pd_annual, policy)[1].mean()),
        historical_offline=historical_offline,
        fixed_truth=fixed,
    )


def best_fixed_rate_offline(
    accept: np.ndarray, accept_at_logged: np.ndarray, frame: pd.DataFrame, policy: PricingPolicy
) -> float:
    """The single rate for everyone that the offline estimate values most (choose it on validation)."""
    grid = policy.grid()
    values = [
        offline_value(np.full(len(frame), rate), accept[:, j], accept_at_logged, frame, policy)[0]
        for j, rate in enumerate(grid)
    ]
    return float(grid[int(np.argmax(values))])


def policy_metrics(
    accept: np.ndarray,
    chosen: np.ndarray,
    accept_at_logged: np.ndarray,
    frame: pd.DataFrame,
    truth: Truth | None,
    reference: Baselines,
    policy: PricingPolicy,
    fixed_rate: float,
) -> dict[str, float]:
    """Value and shape of a model's pricing on one split, keyed by MLflow metric name.

    `accept` is the model's P(accept) of each application at each grid rate, `chosen` the grid
    index of the rate its pricing picked, `fixed_rate` the fixed rate it is compared with offline
    (chosen on validation: the best of many noisy estimates on the same split would flatter it).
    """
    grid = policy.grid()
    rates = grid[chosen]
    offline, matches = offline_value(rates, accept[np.arange(len(frame)), chosen], accept_at_logged, frame, policy)
    column = int(np.argmin(np.abs(grid - fixed_rate)))
    fixed, _ = offline_value(np.full(len(frame), grid[column]), accept[:, column], accept_at_logged, frame, policy)
    out = {
        "ev_offline": offline,
        "offline_matches": float(matches),
        "fixed_rate_offline": float(grid[column]),
        "fixed_offline": fixed,
        "uplift_vs_fixed_offline": _uplift(offline, fixed),
        "mean_rate": float(rates.mean()),
        "floor_share": float(np.isclose(rates, policy.floor).mean()),
        "cap_share": float(np.isclose(rates, grid[-1]).mean()),
    }
    if truth is not None:
        value = float(truth_value(rates, frame, truth, policy).mean())
        out["ev_truth"] = value
        out["uplift_vs_best_fixed_truth"] = _uplift(value, reference.best_fixed_truth)
    return out


def _uplift(value: float, baseline: float) -> float:
    """Relative gain over a baseline, signed right even when the baseline loses money."""
    return (value - baseline) / abs(baseline) if baseline else float("nan")
