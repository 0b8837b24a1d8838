"""Policy simulation: the test window's demand replayed against the orders a forecast drives.

For each store × product, day by day: the order decided at the previous close arrives in the
morning as a fresh batch, the day's demand takes the stock first in, first out, demand the shelf
cannot serve is a stock-out, and stock whose best-before day has come is waste at the close.
Every policy starts from an empty shelf on the first test day and orders with the same
newsvendor rule (`features.store.policy.decide`) from its own forecast and spread, so policies
differ by their forecast alone.

Demand is what the end-of-day reports say was sold at the prices that held. Where the store ran
out, true demand was higher, so stock-outs are, if anything, undercounted for every policy
alike. Markdowns cannot be replayed the same way (nobody saw demand at prices that did not
hold): suggestions are priced with the model's forecast at the cut price and reported as the
waste they are expected to avoid, while orders are replayed at the scheduled prices.

Orders are only comparable at the same availability: a policy that stocks more runs out less
and wastes more. So every forecast's spread is first widened or narrowed until its orders,
replayed on the validation window, run out of stock on at most `MAX_STOCKOUT_RATE` of the
store × product × days (`calibrate`): that is the policy deployed. As a forecast's bias can
shift its availability on the test window (a naive forecast overshoots while demand falls),
the comparison is also made at exactly the naive policy's test availability, and along the
whole trade-off (`frontier`): waste against stock-outs as the spread widens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.store.policy import Spread, decide
from features.windows import DAY_MS

MAX_STOCKOUT_RATE = 0.05
"""Availability every policy is held to: at most one store × product × day in 20 runs out."""
FRONTIER_FACTORS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.5, 2.5)


@dataclass
class PolicyOutcome:
    """Totals of one policy over the test window."""

    ordered: float = 0.0
    sold: float = 0.0
    demand: float = 0.0
    wasted: float = 0.0
    lost: float = 0.0
    purchase_cost: float = 0.0
    waste_cost: float = 0.0
    revenue: float = 0.0
    stockout_days: int = 0
    series_days: int = 0
    markdowns: int = 0
    expected_waste_avoided: float = 0.0
    """Cost of the waste the markdown suggestions are expected to avoid, by the model's forecast."""

    def metrics(self) -> dict[str, float]:
        """The same metric names for every policy (logged with a `test_` prefix)."""
        return {
            "policy_ordered_units": self.ordered,
            "policy_waste_units": self.wasted,
            "policy_waste_cost": self.waste_cost,
            "policy_waste_share": self.waste_cost / self.purchase_cost if self.purchase_cost else 0.0,
            "policy_lost_units": self.lost,
            "policy_stockout_rate": self.stockout_days / self.series_days if self.series_days else 0.0,
            "policy_fill_rate": self.sold / self.demand if self.demand else 1.0,
            "policy_margin": self.revenue - self.purchase_cost,
            "policy_markdowns": float(self.markdowns),
            "policy_expected_waste_avoided": self.expected_waste_avoided,
        }


def simulate(
    frame: pd.DataFrame,
    forecast: np.ndarray,
    spread: Spread,
    markdown_forecasts: Mapping[float, np.ndarray] | None = None,
) -> PolicyOutcome:
    """Replay `frame` (test rows with `label`) with orders from `forecast`.

    Parameters
    ----------
    frame:
        Rows of the test window: `series_id`, `day`, `label`, `price`, `unit_cost`,
        `shelf_life_days`, `sold_by_weight`, in any order.
    forecast:
        Forecast units per row, aligned with `frame`.
    spread:
        How demand scatters around this forecast (its validation residuals).
    markdown_forecasts:
        Depth -> forecast per row at that price cut (depth 0.0 included); markdowns are only
        suggested, and counted, when given.
    """
    order = np.lexsort((frame["day"].to_numpy(), frame["series_id"].to_numpy()))
    series = frame["series_id"].to_numpy()[order]
    day = (frame["day"].to_numpy().astype("datetime64[ms]").astype(np.int64) // DAY_MS)[order]
    demand = frame["label"].to_numpy(dtype=np.float64)[order]
    price = frame["price"].to_numpy(dtype=np.float64)[order]
    cost = frame["unit_cost"].to_numpy(dtype=np.float64)[order]
    shelf = frame["shelf_life_days"].to_numpy()[order].astype(int)
    step = np.where(frame["sold_by_weight"].to_numpy()[order] > 0, 0.1, 1.0)
    mean = np.asarray(forecast, dtype=np.float64)[order]
    scenarios = {d: np.asarray(f, dtype=np.float64)[order] for d, f in (markdown_forecasts or {}).items()}

    out = PolicyOutcome()
    batches: list[list[float]] = []
    for i in range(len(order)):
        if i == 0 or series[i] != series[i - 1]:
            batches = []
        today = int(day[i])
        usable = sum(q for _, q in batches)
        expiring = sum(q for expiry, q in batches if expiry <= today)
        decision = decide({0.0: mean[i]}, spread, usable, expiring, price[i], cost[i], shelf[i], step[i])
        if scenarios and expiring > 0:
            suggestion = decide(
                {d: f[i] for d, f in scenarios.items()},
                spread,
                usable,
                expiring,
                price[i],
                cost[i],
                shelf[i],
                step[i],
            )
            if suggestion.markdown > 0:
                out.markdowns += 1
                waste_at_price = spread.leftover(scenarios[0.0][i], expiring)
                out.expected_waste_avoided += (waste_at_price - suggestion.expected_waste) * cost[i]
        if decision.order_qty > 0:
            batches.append([today + shelf[i] - 1, decision.order_qty])
            batches.sort()
        left = demand[i]
        for batch in batches:
            take = min(batch[1], left)
            batch[1] -= take
            left -= take
        sold = demand[i] - left
        wasted = sum(q for expiry, q in batches if expiry <= today)
        batches = [b for b in batches if b[0] > today and b[1] > 1e-9]
        out.ordered += decision.order_qty
        out.purchase_cost += decision.order_qty * cost[i]
        out.sold += sold
        out.demand += demand[i]
        out.revenue += sold * price[i]
        out.lost += left
        out.wasted += wasted
        out.waste_cost += wasted * cost[i]
        out.stockout_days += int(left > 1e-9)
        out.series_days += 1
    return out


def calibrate(
    frame: pd.DataFrame, forecast: np.ndarray, spread: Spread, max_stockout_rate: float = MAX_STOCKOUT_RATE
) -> tuple[Spread, float]:
    """The narrowest widening of `spread` whose orders meet `max_stockout_rate` on `frame`.

    Stock-outs fall as the spread widens, so the factor is found by bisection between a
    quarter and four times the fitted width. Returns the spread and its factor.
    """
    low, high = 0.25, 4.0
    for _ in range(6):
        middle = (low + high) / 2
        if simulate(frame, forecast, spread.widened(middle)).metrics()["policy_stockout_rate"] <= max_stockout_rate:
            high = middle
        else:
            low = middle
    return spread.widened(high), high


def frontier(frame: pd.DataFrame, forecast: np.ndarray, spread: Spread) -> list[tuple[float, float]]:
    """(stock-out rate, waste cost) of the orders `forecast` drives as its spread widens."""
    points = []
    for factor in FRONTIER_FACTORS:
        metrics = simulate(frame, forecast, spread.widened(factor)).metrics()
        points.append((metrics["policy_stockout_rate"], metrics["policy_waste_cost"]))
    return points
