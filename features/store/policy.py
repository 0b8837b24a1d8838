"""Decisions from a demand forecast: how much to order for tomorrow, and whether to mark down.

Pure functions of numbers, shared by the live scorer, the training job's policy simulation and
the tests. How demand scatters around a forecast is learnt, not assumed: a `Spread` holds the
quantiles of the forecast's own validation residuals, scaled by the square root of the forecast
(counts scatter that way), so a forecast that erred more carries a wider spread, and the stock
a service level asks for is what that level actually covered on validation.

* Orders follow the newsvendor rule: stock up to the demand quantile that balances a missed
  sale (its margin, plus goodwill: a shopper facing an empty shelf may not come back) against
  a unit left over, which turns into waste only if it is still unsold when it expires (about
  one chance in its shelf life).
* A markdown lowers tomorrow's price of a product with stock about to expire. Each candidate
  depth is priced with the model's own forecast at that price; the depth with the best expected
  margin, after a penalty per unit expected to expire unsold, wins. Expiring units are sold
  first (first in, first out), so their expected waste is E[max(0, expiring − demand)].
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from features.store.featureset import PRICE_FEATURE, PRICE_SINCE_FEATURE, PROMOTION_FEATURE

MARKDOWN_DEPTHS: tuple[float, ...] = (0.0, 0.2, 0.35, 0.5)
"""Candidate price cuts, as shares of tomorrow's scheduled price."""
MIN_MEAN = 0.25
"""Floor of the forecast in the spread's scaling, so a zero forecast still has some spread."""
SPREAD_POINTS = 50
"""Quantiles a `Spread` keeps: enough for a smooth demand distribution, cheap to sum over."""
GOODWILL = 0.5
"""Cost of a stock-out beyond the lost margin, as a share of the price."""


@dataclass(frozen=True, slots=True)
class Spread:
    """Demand around a forecast f: f + r·√max(f, MIN_MEAN) for each residual quantile r, floored at 0.

    Each of the `quantiles` (sorted, at levels (k + ½) / n) is an equally likely outcome.
    """

    quantiles: tuple[float, ...]

    @classmethod
    def fit(cls, actual: Iterable[float], forecast: Iterable[float]) -> Spread:
        """The spread of `forecast`'s residuals against `actual` (validation rows)."""
        scaled = sorted((a - f) / math.sqrt(max(f, MIN_MEAN)) for a, f in zip(actual, forecast, strict=True))
        if not scaled:
            raise ValueError("a spread needs at least one residual")
        n = len(scaled)
        points = []
        for k in range(SPREAD_POINTS):
            position = (k + 0.5) / SPREAD_POINTS * n - 0.5
            low = min(max(int(math.floor(position)), 0), n - 1)
            high = min(low + 1, n - 1)
            weight = min(max(position - low, 0.0), 1.0)
            points.append(scaled[low] * (1 - weight) + scaled[high] * weight)
        return cls(tuple(points))

    def widened(self, factor: float) -> Spread:
        """The same spread, `factor` times as wide: more stock for every service level above ½."""
        return Spread(tuple(r * factor for r in self.quantiles))

    def outcomes(self, forecast: float) -> list[float]:
        """The equally likely demands around `forecast`, ascending."""
        scale = math.sqrt(max(forecast, MIN_MEAN))
        return [max(0.0, forecast + r * scale) for r in self.quantiles]

    def quantile(self, forecast: float, level: float) -> float:
        """The demand `level` of the outcomes stay below (interpolated)."""
        return _quantile(self.outcomes(forecast), level)

    def shortage(self, forecast: float, stock: float) -> float:
        """E[max(0, demand − stock)]: demand that `stock` cannot serve."""
        return _shortage(self.outcomes(forecast), stock)

    def leftover(self, forecast: float, stock: float) -> float:
        """E[max(0, stock − demand)]: stock that demand does not take."""
        return _leftover(self.outcomes(forecast), stock)


def _quantile(outcomes: list[float], level: float) -> float:
    position = min(max(level * len(outcomes) - 0.5, 0.0), len(outcomes) - 1.0)
    low = int(position)
    high = min(low + 1, len(outcomes) - 1)
    return outcomes[low] + (outcomes[high] - outcomes[low]) * (position - low)


def _shortage(outcomes: list[float], stock: float) -> float:
    first = bisect.bisect_right(outcomes, stock)
    return sum(outcomes[first:]) / len(outcomes) - stock * (len(outcomes) - first) / len(outcomes)


def _leftover(outcomes: list[float], stock: float) -> float:
    last = bisect.bisect_left(outcomes, stock)
    return stock * last / len(outcomes) - sum(outcomes[:last]) / len(outcomes)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do for one store×product tomorrow, and what is expected to come of it."""

    order_qty: float
    markdown: float
    """Price cut as a share of the scheduled price; 0.0 for none."""
    expected_sold: float
    expected_waste: float
    """Units of the stock that expires tomorrow expected to go unsold."""
    expected_margin: float


def service_level(price: float, unit_cost: float, shelf_life_days: int, goodwill: float = GOODWILL) -> float:
    """Newsvendor service level of a perishable product: underage / (underage + overage).

    Underage is the margin of a missed sale plus `goodwill` × price; overage is the cost of a
    unit left over, lost only if it expires unsold: for a shelf life of n days, about one time in n.
    """
    under = max(price - unit_cost, 0.0) + goodwill * price
    over = unit_cost / max(shelf_life_days, 1)
    return under / (under + over) if under + over > 0 else 0.5


def order_quantity(forecast: float, spread: Spread, usable_on_hand: float, service: float, step: float) -> float:
    """Units to order so that stock reaches the `service` quantile of demand.

    `usable_on_hand` is what is left on the shelf tonight that has not expired; the order is
    rounded to the nearest `step` (1 for pieces, 0.1 for goods sold by weight).
    """
    return _order(spread.outcomes(forecast), usable_on_hand, service, step)


def _order(outcomes: list[float], usable_on_hand: float, service: float, step: float) -> float:
    quantity = max(0.0, _quantile(outcomes, service) - usable_on_hand)
    return math.floor(quantity / step + 0.5) * step


def decide(
    forecasts: Mapping[float, float],
    spread: Spread,
    usable_on_hand: float,
    expiring: float,
    price: float,
    unit_cost: float,
    shelf_life_days: int,
    step: float,
    waste_penalty: float | None = None,
) -> Decision:
    """Order quantity and markdown for tomorrow.

    Parameters
    ----------
    forecasts:
        Markdown depth -> forecast demand at that price; must hold depth 0.0 (the scheduled
        price). With nothing expiring, or a single depth, no markdown is considered.
    spread:
        How demand scatters around the model's forecasts (`Spread.fit` on validation).
    usable_on_hand:
        Stock left tonight that has not expired; `expiring` of it expires at the end of tomorrow.
    price, unit_cost, shelf_life_days:
        Tomorrow's scheduled price, the purchase cost, the shelf life of a fresh delivery.
    step:
        Order rounding (1 for pieces, 0.1 for goods sold by weight).
    waste_penalty:
        Cost charged per unit expected to expire unsold; the unit cost if None.

    Returns
    -------
    The decision with the best expected margin (ties go to the smaller markdown).
    """
    penalty = unit_cost if waste_penalty is None else waste_penalty
    depths = sorted(forecasts) if expiring > 0 else [0.0]
    best: Decision | None = None
    for depth in depths:
        outcomes = spread.outcomes(max(forecasts[depth], 0.0))
        unit_price = price * (1.0 - depth)
        order = _order(outcomes, usable_on_hand, service_level(unit_price, unit_cost, shelf_life_days), step)
        sold = sum(outcomes) / len(outcomes) - _shortage(outcomes, usable_on_hand + order)
        waste = _leftover(outcomes, expiring) if expiring > 0 else 0.0
        margin = unit_price * sold - unit_cost * order - penalty * waste
        if best is None or margin > best.expected_margin + 1e-9:
            best = Decision(order, depth, sold, waste, margin)
    assert best is not None
    return best


def markdown_scenario(row: Mapping[str, float], depth: float) -> dict[str, float]:
    """The feature row as it would read with tomorrow's price cut by `depth`.

    The model is asked for its forecast at each candidate price through these rows; depth 0.0
    returns the row unchanged.
    """
    scenario = dict(row)
    if depth > 0:
        scenario[PRICE_FEATURE] = row[PRICE_FEATURE] * (1.0 - depth)
        scenario[PROMOTION_FEATURE] = 0.0
        scenario[PRICE_SINCE_FEATURE] = 0.0
    return scenario
