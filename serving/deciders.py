"""What each use case decides from its model, one feature row at a time.

The scorer (`serving.scorer`) is the same for every use case: it reads a feature row, checks it
and writes one record per row. What it asks the model, and what the answer means, differs: a
fraud score is cut into approve / review / block; a loan model's P(accept | rate) is asked at
every rate of a grid to price the application; a store model's demand forecast, asked at each
markdown depth, becomes an order and a markdown suggestion. A `Decider` is that difference, one
per use case, named by its registry entry (`decider_for`); `BinaryDecider` serves any binary
use case. It reads a model version's decision policy from the version's tags
when the version is loaded, so a version without a usable one is never swapped in, and it turns
a checked row into the fields of a decision record. The policies and decision functions are the
pure ones in `features/` that training evaluates with, so a live decision equals the offline one
for the same row and model version.

Challengers (`serving.challenger`) decide a batch of rows at once with `decide_batch`: fraud
asks its model about the whole batch in one call; loan and store already ask one call per row
(the grid, the depths) and decide row by row.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from features.loan.featureset import RATE_FEATURE
from features.loan.pricing import PricingPolicy, quote_row
from features.store.policy import MARKDOWN_DEPTHS, Spread, decide, markdown_scenario
from features.usecases import get_use_case, load_object

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from serving.registry import LoadedModel

log = logging.getLogger("samestream.deciders")

DEFAULT_REVIEW = 0.5
DEFAULT_BLOCK = 0.9


class Decider(Protocol):
    """One use case's decision: the policy a model version carries, and how a row is decided."""

    use_case: str
    fields: tuple[str, ...]
    """Fields the decision adds to a record, in order; all null when the model fails."""
    supplied_inputs: tuple[str, ...]
    """Model inputs the decider fills in itself instead of reading them from the row (the loan's rate)."""
    row_columns: tuple[str, ...]
    """Numeric row columns the decision reads besides the model's inputs."""
    ranked: bool
    """Whether a label judges the decision's score, so live metrics can rank models by it."""

    def policy(self, params: Mapping[str, str], inputs: tuple[str, ...], label: str) -> Any:
        """The decision policy of a model version (`label`) from its tags over its run's params.

        Raises ValueError if the version cannot make this use case's decisions.
        """
        ...

    def decide(self, model: LoadedModel, row: Mapping[str, Any], values: list[float]) -> dict[str, Any]:
        """The decision fields of one checked row; `values` are its `model.row_features`, in order."""
        ...

    def decide_batch(
        self, model: LoadedModel, rows: Sequence[Mapping[str, Any]], values: NDArray[np.float64]
    ) -> list[dict[str, Any]]:
        """`decide` for many checked rows at once (`values`: one row of inputs per row), for
        scorers that may wait for a batch (challengers): one model call where the decision allows."""
        ...

    def describe(self, model: LoadedModel) -> str:
        """The model's policy in a few words, for the command line."""
        ...

    def summary(self, record: Mapping[str, Any]) -> tuple[float | None, str | None]:
        """(score, decision) of a record: what live metrics compare across models."""
        ...


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score cut-offs of a fraud decision: below `review` approve, from `block` on block."""

    review: float = DEFAULT_REVIEW
    block: float = DEFAULT_BLOCK

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.block <= 1.0:
            raise ValueError(
                f"thresholds must satisfy 0 <= review <= block <= 1, got review={self.review}, block={self.block}"
            )

    def decide(self, score: float) -> str:
        if score >= self.block:
            return "block"
        if score >= self.review:
            return "review"
        return "approve"


class FraudDecider:
    """A payment's fraud score, cut by the version's `threshold_review` / `threshold_block` tags,
    and its reasons: the three inputs that pushed the score up most (`LoadedModel.explained_one`,
    score and reasons from one pass), null for a model that offers none.

    A version with unusable thresholds still scores, with the defaults (and a warning): a
    fraud check must answer every payment.
    """

    use_case = "fraud"
    fields: tuple[str, ...] = ("score", "decision", "reasons")
    supplied_inputs: tuple[str, ...] = ()
    row_columns: tuple[str, ...] = ()
    ranked = True

    def policy(self, params: Mapping[str, str], inputs: tuple[str, ...], label: str) -> Thresholds:
        try:
            return Thresholds(
                review=float(params.get("threshold_review") or DEFAULT_REVIEW),
                block=float(params.get("threshold_block") or DEFAULT_BLOCK),
            )
        except ValueError as exc:
            log.warning("%s has unusable thresholds (%s); using the defaults", label, exc)
            return Thresholds()

    def decide(self, model: LoadedModel, row: Mapping[str, Any], values: list[float]) -> dict[str, Any]:
        explained = model.explained_one(values) if model.explained_one is not None else None
        score, reasons = explained if explained is not None else (model.predict_one(values), None)
        return {"score": score, "decision": model.policy.decide(score), "reasons": reasons}

    def decide_batch(
        self, model: LoadedModel, rows: Sequence[Mapping[str, Any]], values: NDArray[np.float64]
    ) -> list[dict[str, Any]]:
        decide = model.policy.decide
        explained = model.explained_many(values) if model.explained_many is not None else None
        found, reasons = explained if explained is not None else (model.predict_many(values), [None] * len(values))
        scores = found.tolist()
        return [
            {"score": score, "decision": decide(score), "reasons": why}
            for score, why in zip(scores, reasons, strict=True)
        ]

    def describe(self, model: LoadedModel) -> str:
        return f"review >= {model.policy.review:g}, block >= {model.policy.block:g}"

    def summary(self, record: Mapping[str, Any]) -> tuple[float | None, str | None]:
        return record.get("score"), record.get("decision")


class LoanDecider:
    """An application's offer: the grid rate of highest expected value (`features.loan.pricing.quote_row`).

    The model is asked P(accept) at every rate of the version's pricing policy (its `pricing_*`
    tags) in one batch; the grid starts at the floor, so no offer is below it.
    """

    use_case = "loan"
    fields: tuple[str, ...] = ("rate", "p_accept", "expected_value")
    supplied_inputs: tuple[str, ...] = (RATE_FEATURE,)
    row_columns: tuple[str, ...] = ("amount_eur", "term_months", "pd_annual")
    ranked = False

    def policy(self, params: Mapping[str, str], inputs: tuple[str, ...], label: str) -> PricingPolicy:
        if not inputs or inputs[-1] != RATE_FEATURE:
            raise ValueError(
                f"a loan model takes the rate, {RATE_FEATURE!r}, as its last input; this one takes {inputs}"
            )
        return PricingPolicy.from_params(params)

    def decide(self, model: LoadedModel, row: Mapping[str, Any], values: list[float]) -> dict[str, Any]:
        quote = quote_row(row, model.predict_many, model.policy, model.row_features)
        return {"rate": quote.rate, "p_accept": quote.p_accept, "expected_value": quote.expected_value}

    def decide_batch(
        self, model: LoadedModel, rows: Sequence[Mapping[str, Any]], values: NDArray[np.float64]
    ) -> list[dict[str, Any]]:
        return one_by_one(self, model, rows, values)

    def describe(self, model: LoadedModel) -> str:
        p: PricingPolicy = model.policy
        return (
            f"rates {p.floor:.2%} to {p.cap:.2%} in steps of {p.step:.2%}, cost of funds {p.funding_rate:.2%}, "
            f"LGD {p.lgd:.0%}"
        )

    def summary(self, record: Mapping[str, Any]) -> tuple[float | None, str | None]:
        rate = record.get("rate")
        return record.get("p_accept"), None if rate is None else f"{rate:.4f}"


class StoreDecider:
    """Tomorrow's order and markdown for one store × product (`features.store.policy.decide`).

    The model forecasts demand at the scheduled price and, when stock expires tomorrow, at each
    markdown depth (`markdown_scenario`), in one batch; demand scatters around the forecasts by
    the version's `spread_quantiles` tag, the spread its policy simulation was run with.
    """

    use_case = "store"
    fields: tuple[str, ...] = (
        "order_qty",
        "markdown",
        "forecast",
        "expected_sold",
        "expected_waste",
        "expected_margin",
    )
    supplied_inputs: tuple[str, ...] = ()
    row_columns: tuple[str, ...] = ("on_hand", "expiring_1d", "price", "unit_cost", "shelf_life_days", "sold_by_weight")
    ranked = False

    def policy(self, params: Mapping[str, str], inputs: tuple[str, ...], label: str) -> Spread:
        raw = params.get("spread_quantiles")
        if not raw:
            raise ValueError("no spread_quantiles tag: register store models with `samestream train store`")
        try:
            quantiles = tuple(float(q) for q in json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"spread_quantiles is not a JSON list of numbers: {exc}") from None
        if not quantiles or not all(map(math.isfinite, quantiles)) or list(quantiles) != sorted(quantiles):
            raise ValueError("spread_quantiles must be finite numbers in ascending order")
        return Spread(quantiles)

    def decide(self, model: LoadedModel, row: Mapping[str, Any], values: list[float]) -> dict[str, Any]:
        expiring = float(row["expiring_1d"])
        depths = MARKDOWN_DEPTHS if expiring > 0 else (0.0,)
        scenarios = [markdown_scenario(row, depth) for depth in depths]
        inputs = np.asarray([[s[name] for name in model.feature_names] for s in scenarios], dtype=np.float64)
        forecasts = dict(zip(depths, model.predict_many(inputs).tolist(), strict=True))
        decision = decide(
            forecasts,
            model.policy,
            usable_on_hand=float(row["on_hand"]),
            expiring=expiring,
            price=float(row["price"]),
            unit_cost=float(row["unit_cost"]),
            shelf_life_days=int(row["shelf_life_days"]),
            step=0.1 if row["sold_by_weight"] > 0 else 1.0,
        )
        return {
            "order_qty": decision.order_qty,
            "markdown": decision.markdown,
            "forecast": forecasts[0.0],
            "expected_sold": decision.expected_sold,
            "expected_waste": decision.expected_waste,
            "expected_margin": decision.expected_margin,
        }

    def decide_batch(
        self, model: LoadedModel, rows: Sequence[Mapping[str, Any]], values: NDArray[np.float64]
    ) -> list[dict[str, Any]]:
        return one_by_one(self, model, rows, values)

    def describe(self, model: LoadedModel) -> str:
        depths = "/".join(f"{d:.0%}" for d in MARKDOWN_DEPTHS if d > 0)
        return f"demand spread of {len(model.policy.quantiles)} quantiles, markdowns of {depths} for expiring stock"

    def summary(self, record: Mapping[str, Any]) -> tuple[float | None, str | None]:
        order, markdown = record.get("order_qty"), record.get("markdown")
        return record.get("forecast"), None if order is None else f"order {order:g}, markdown {markdown:g}"


class BinaryDecider:
    """A score and an alert from a version's `threshold` tag: the decision of any binary use case
    whose training task is `training.jobs.binary.BinaryTask`, so a new one needs no decider code.

    A version without a usable threshold is refused: an alert rule must come from validation.
    """

    fields: tuple[str, ...] = ("score", "decision")
    supplied_inputs: tuple[str, ...] = ()
    row_columns: tuple[str, ...] = ()
    ranked = True

    def __init__(self, use_case: str) -> None:
        self.use_case = use_case

    def policy(self, params: Mapping[str, str], inputs: tuple[str, ...], label: str) -> float:
        try:
            threshold = float(params["threshold"])
        except (KeyError, ValueError):
            raise ValueError(f"{label} has no usable `threshold` tag: register it with `samestream train`") from None
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{label}: threshold {threshold} is not a probability")
        return threshold

    def decide(self, model: LoadedModel, row: Mapping[str, Any], values: list[float]) -> dict[str, Any]:
        score = model.predict_one(values)
        return {"score": score, "decision": binary_decision(score, model.policy)}

    def decide_batch(
        self, model: LoadedModel, rows: Sequence[Mapping[str, Any]], values: NDArray[np.float64]
    ) -> list[dict[str, Any]]:
        return [
            {"score": score, "decision": binary_decision(score, model.policy)}
            for score in model.predict_many(values).tolist()
        ]

    def describe(self, model: LoadedModel) -> str:
        return f"alert from a score of {model.policy:g}"

    def summary(self, record: Mapping[str, Any]) -> tuple[float | None, str | None]:
        return record.get("score"), record.get("decision")


def binary_decision(score: float, threshold: float) -> str:
    """`alert` from the threshold on, else `pass` (the batch side decides with the same function)."""
    return "alert" if score >= threshold else "pass"


def one_by_one(
    decider: Decider, model: LoadedModel, rows: Sequence[Mapping[str, Any]], values: NDArray[np.float64]
) -> list[dict[str, Any]]:
    """`decide_batch` for deciders whose one row is already one model call over many inputs."""
    return [decider.decide(model, row, inputs) for row, inputs in zip(rows, values.tolist(), strict=True)]


def decider_for(use_case: str) -> Decider:
    """The decider the use case's registry entry names (`features.usecases.UseCase.decider`)."""
    path = get_use_case(use_case).decider
    if not path:
        raise ValueError(f"no live decisions for the use case {use_case!r}: its registry entry names no decider")
    decider: Decider = load_object(path)()
    return decider
