"""Pricing: the offered rate that maximizes expected value, never below the floor.

For one application, offering rate r is worth

    EV(r) = P(accept | r) * (margin(r) - expected credit loss)

because both the interest margin and the credit loss arise only if the customer takes the
loan. The margin is the rate above the cost of funds earned on the average balance of an
amortizing loan; the expected credit loss is the chance of default over the term times the loss
given default on that same average balance. The rate is chosen on a grid from the floor to the
cap, so no offer is ever below the floor; ties go to the lower rate.

Pure code over numbers and a probability function: the live scorer, the training job and the
tests call the same functions, with whatever model (or ground truth) gives P(accept | r);
`quote_row` answers one feature row of the loan FeatureSet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from features.loan.featureset import FEATURES

Floats = NDArray[np.float64]
Probability = Callable[[Floats], ArrayLike]
"""Rates (one application) -> P(accept) at each rate."""


@dataclass(frozen=True, slots=True)
class PricingPolicy:
    """The economics and limits of an offer; rates are fractions per year (0.079 = 7.9 %)."""

    floor: float = 0.04
    cap: float = 0.24
    step: float = 0.0025
    funding_rate: float = 0.025
    lgd: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 < self.floor <= self.cap < 1.0:
            raise ValueError(f"rates must satisfy 0 < floor <= cap < 1, got floor={self.floor}, cap={self.cap}")
        if self.step <= 0.0:
            raise ValueError(f"step must be positive, got {self.step}")
        if not 0.0 <= self.lgd <= 1.0:
            raise ValueError(f"lgd (loss given default) must be in [0, 1], got {self.lgd}")
        if not 0.0 <= self.funding_rate < 1.0:
            raise ValueError(f"funding_rate must be in [0, 1), got {self.funding_rate}")

    def grid(self) -> Floats:
        """Every rate the policy may offer, ascending, starting at the floor."""
        n = int(np.floor((self.cap - self.floor) / self.step + 1e-9)) + 1
        return np.maximum(np.round(self.floor + self.step * np.arange(n), 6), self.floor)

    def as_params(self) -> dict[str, float]:
        """The policy as flat `pricing_*` parameters (MLflow params and model-version tags)."""
        return {f"pricing_{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PricingPolicy:
        """The policy recorded by `as_params`; missing entries take the defaults."""
        names = cls.__dataclass_fields__
        return cls(**{k: float(params[f"pricing_{k}"]) for k in names if f"pricing_{k}" in params})


@dataclass(frozen=True, slots=True)
class Quote:
    """The answer to one application: the rate and what it is expected to be worth."""

    rate: float
    p_accept: float
    expected_value: float
    margin: float
    expected_loss: float


def balance_years(term_months: ArrayLike) -> Floats:
    """Average outstanding balance of an amortizing loan times its life, per unit lent, in years."""
    n = np.asarray(term_months, dtype=np.float64)
    return (n / 12.0) * (n + 1.0) / (2.0 * n)


def margin(rate: ArrayLike, amount: ArrayLike, term_months: ArrayLike, funding_rate: float) -> Floats:
    """Interest earned above the cost of funds over the loan's life, if the loan is taken."""
    return (
        np.asarray(amount, dtype=np.float64)
        * (np.asarray(rate, dtype=np.float64) - funding_rate)
        * (balance_years(term_months))
    )


def expected_loss(pd_annual: ArrayLike, amount: ArrayLike, term_months: ArrayLike, lgd: float) -> Floats:
    """Expected credit loss over the term, if the loan is taken: P(default in term) x LGD x exposure."""
    n = np.asarray(term_months, dtype=np.float64)
    pd_term = 1.0 - (1.0 - np.asarray(pd_annual, dtype=np.float64)) ** (n / 12.0)
    exposure = np.asarray(amount, dtype=np.float64) * (n + 1.0) / (2.0 * n)
    return pd_term * lgd * exposure


def expected_value(
    p_accept: ArrayLike,
    rate: ArrayLike,
    amount: ArrayLike,
    term_months: ArrayLike,
    pd_annual: ArrayLike,
    policy: PricingPolicy,
) -> Floats:
    """EV of offering `rate`: P(accept) x (margin - expected loss); arrays broadcast."""
    value = margin(rate, amount, term_months, policy.funding_rate) - expected_loss(
        pd_annual, amount, term_months, policy.lgd
    )
    return np.asarray(p_accept, dtype=np.float64) * value


def choose_rates(
    p_accept: ArrayLike,
    amount: ArrayLike,
    term_months: ArrayLike,
    pd_annual: ArrayLike,
    policy: PricingPolicy,
) -> tuple[Floats, Floats, NDArray[np.intp]]:
    """The best grid rate of each of n applications.

    `p_accept` is (n, len(grid)): P(accept) of each application at each grid rate. Returns the
    chosen rates, their expected values and their grid indices.
    """
    grid = policy.grid()
    p = _probabilities(p_accept, (-1, len(grid)))
    amount, term, pd_ = (np.asarray(a, dtype=np.float64).reshape(-1, 1) for a in (amount, term_months, pd_annual))
    ev = expected_value(p, grid[None, :], amount, term, pd_, policy)
    best = np.argmax(ev, axis=1)
    return grid[best], ev[np.arange(len(best)), best], best


def best_rate(
    probability: Probability,
    *,
    amount: float,
    term_months: int,
    pd_annual: float,
    policy: PricingPolicy,
) -> Quote:
    """The quote for one application, given P(accept | rate) as a function of the rate grid.

    Raises ValueError if `probability` returns anything but one probability per grid rate.
    """
    grid = policy.grid()
    p = _probabilities(probability(grid), (len(grid),))
    rates, values, best = choose_rates(p[None, :], [amount], [term_months], [pd_annual], policy)
    rate = float(rates[0])
    return Quote(
        rate=rate,
        p_accept=float(p[best[0]]),
        expected_value=float(values[0]),
        margin=float(margin(rate, amount, term_months, policy.funding_rate)),
        expected_loss=float(expected_loss(pd_annual, amount, term_months, policy.lgd)),
    )


def quote_row(
    row: Mapping[str, Any],
    predict: Callable[[Floats], ArrayLike],
    policy: PricingPolicy,
    feature_names: Sequence[str] = FEATURES,
) -> Quote:
    """The quote for one feature row of the loan FeatureSet, from a model of P(accept).

    `predict` takes model inputs, one row per candidate rate (the features in `feature_names`
    order, then the rate), and returns P(accept) per row: what the live scorer and a backtest
    call with the registered model. Raises KeyError or TypeError for a malformed row and
    ValueError for unusable probabilities.
    """
    features = [float(row[name]) for name in feature_names]
    return best_rate(
        lambda rates: predict(grid_inputs([features], rates)),
        amount=float(row["amount_eur"]),
        term_months=int(row["term_months"]),
        pd_annual=float(row["pd_annual"]),
        policy=policy,
    )


def grid_inputs(features: ArrayLike, rates: ArrayLike) -> Floats:
    """Model inputs for every (application, rate) pair: each feature row repeated, the rate appended.

    `features` is (n, d); the result is (n * len(rates), d + 1), application-major, so a model's
    n * len(rates) probabilities reshape to the (n, len(rates)) matrix `choose_rates` takes.
    """
    x = np.atleast_2d(np.asarray(features, dtype=np.float64))
    r = np.asarray(rates, dtype=np.float64)
    repeated = np.repeat(x, len(r), axis=0)
    return np.column_stack([repeated, np.tile(r, len(x))])


def _probabilities(values: ArrayLike, shape: tuple[int, ...]) -> Floats:
    p = np.asarray(values, dtype=np.float64)
    try:
        p = p.reshape(shape)
    except ValueError:
        raise ValueError(f"expected one probability per grid rate (shape {shape}), got shape {p.shape}") from None
    if not np.isfinite(p).all() or (p < 0.0).any() or (p > 1.0).any():
        raise ValueError("acceptance probabilities must be finite and within [0, 1]")
    return p
