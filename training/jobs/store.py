"""Store waste: simulate the chain's feeds; forecast demand and replay the orders the forecasts drive.

Every candidate and the naive forecast (same weekday last week) are judged by their forecast
errors on validation and test (`mae`, `rmse`, `wape`, `bias`), then by the policy simulation on
the test window (waste, stock-outs, margin of the orders the forecast drives, and markdown
suggestions); every run also logs the data-quality counts of the load. The decision policy is
the demand spread calibrated on validation (`spread_quantiles`); the lowest validation WAPE is
`champion`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow.pyfunc import PythonModel
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from features.featureset import FeatureSet
from features.store.policy import MARKDOWN_DEPTHS, Spread, markdown_scenario
from training import plots
from training.datasets import Splits, Windows
from training.harness import Column, Evaluation, Predict, Selection, TrainReport, WindowDays, number
from training.jobs import Advance, TrainOptions
from training.store_forecast import (
    CANDIDATES,
    NAIVE,
    NAIVE_FEATURE,
    ForecastModel,
    forecast_metrics,
    forecast_plot,
    load_splits,
)
from training.store_policy import MAX_STOCKOUT_RATE, PolicyOutcome, calibrate, frontier, simulate
from training.store_quality import QualitySummary, quality_summary

_MATCHED = ("policy_waste_cost", "policy_stockout_rate", "policy_margin")


@dataclass
class StoreDetail:
    """A forecast's policy: its spread, and the orders it drives on the test window."""

    spread: Spread
    spread_factor: float
    policy: PolicyOutcome
    """Orders with the spread calibrated on validation: the policy as deployed."""
    matched: PolicyOutcome
    """Orders with the spread that meets the naive policy's test availability exactly."""
    frontier: list[tuple[float, float]]
    """Waste against stock-outs on the test window as the spread widens."""


class StoreTask:
    """Regression of units sold per store × product × day; champion by validation WAPE.

    Models fit and predict on one thread (see `training.store_forecast.CANDIDATES`).
    """

    kind = "regression_forecast"
    window_days = WindowDays(warmup=28, validation=28, delay=1, test=28)
    selection = Selection("wape", higher_is_better=False, heading="val WAPE")
    baseline_name = NAIVE
    importance_scoring = "neg_mean_absolute_error"
    threads = 1
    noun = "demand forecasts"
    row_unit = "store×product×day rows"

    def __init__(self, fs: FeatureSet, quality: QualitySummary) -> None:
        self.fs = fs
        self.quality = quality

    def inputs(self) -> tuple[str, ...]:
        return tuple(self.fs.feature_names)

    def candidates(self, seed: int) -> dict[str, Any]:
        return {name: make(seed) for name, make in CANDIDATES.items()}

    def load(self, db: Path, windows: Windows) -> Splits:
        return load_splits(db, self.fs, windows)

    def params(self) -> dict[str, Any]:
        return {
            "markdown_depths": ",".join(f"{d:g}" for d in MARKDOWN_DEPTHS),
            "max_stockout_rate": MAX_STOCKOUT_RATE,
        }

    def fit_baseline(self, frame: pd.DataFrame) -> Predict:
        """Units sold on the same weekday a week before: a feature of the row, nothing to fit."""

        def predict(rows: pd.DataFrame) -> np.ndarray:
            return rows[NAIVE_FEATURE].to_numpy(dtype=np.float64)

        return predict

    def evaluate(
        self, name: str, validation: Predict, test: Predict, data: Splits, reference: Evaluation | None
    ) -> Evaluation:
        y_val = data.validation["label"].to_numpy(dtype=np.float64)
        y_test = data.test["label"].to_numpy(dtype=np.float64)
        val_forecast = np.asarray(validation(data.validation), dtype=np.float64)
        spread, factor = calibrate(data.validation, val_forecast, Spread.fit(y_val, val_forecast))
        test_forecast = np.asarray(test(data.test), dtype=np.float64)
        curve = frontier(data.test, test_forecast, spread)
        if reference is None:
            deployed = matched = simulate(data.test, test_forecast, spread)
        else:
            deployed = simulate(data.test, test_forecast, spread, _markdown_forecasts(test, data.test, self.inputs()))
            availability = reference.detail.policy.metrics()["policy_stockout_rate"]
            matched_spread, _ = calibrate(data.test, test_forecast, spread, availability)
            matched = simulate(data.test, test_forecast, matched_spread)
        detail = StoreDetail(spread, factor, deployed, matched, curve)
        naive = reference.detail if reference is not None else detail
        naive_test = data.test[NAIVE_FEATURE].to_numpy(dtype=np.float64)
        return Evaluation(
            validation=forecast_metrics(y_val, val_forecast),
            test=forecast_metrics(y_test, test_forecast)
            | deployed.metrics()
            | {f"{k}_at_naive_availability": v for k, v in matched.metrics().items() if k in _MATCHED},
            policy={"spread_quantiles": json.dumps([round(q, 6) for q in spread.quantiles])},
            metrics={"spread_factor": factor} | self.quality.metrics(),
            figures={
                "forecast_vs_actual.png": forecast_plot(data.test, test_forecast, naive_test, f"{name}: test window"),
                "policy_frontier.png": _frontier_plot(curve, naive.frontier, deployed, naive.policy, name),
            },
            detail=detail,
        )

    def wrap(self, estimator: Any, evaluation: Evaluation | None) -> PythonModel:
        return ForecastModel(estimator, self.inputs(), evaluation.detail.spread if evaluation else None)

    def columns(self) -> list[Column]:
        return [
            ("val WAPE", lambda r: number(r.validation["wape"], ".3f")),
            ("test MAE", lambda r: number(r.test["mae"], ".2f")),
            ("test RMSE", lambda r: number(r.test["rmse"], ".2f")),
            ("test WAPE", lambda r: number(r.test["wape"], ".3f")),
            ("test bias", lambda r: number(r.test["bias"], "+.3f")),
        ]

    def tables(self, report: TrainReport) -> list[RenderableType]:
        """The orders each forecast drives, the champion against the naive policy, the load's quality."""
        assert report.baseline is not None
        baseline = report.baseline
        rows = [*report.results, baseline]
        naive = baseline.detail.policy.metrics()
        orders = Table(
            title=f"orders replayed on the test window, spread calibrated for at most {MAX_STOCKOUT_RATE:.0%} "
            "stock-out days on validation"
        )
        for column in (
            "model",
            "waste cost",
            "waste share",
            "stock-out days",
            "fill rate",
            "margin",
            f"waste cost at naive's {naive['policy_stockout_rate']:.1%} stock-out days",
            "markdowns (exp. waste avoided)",
        ):
            orders.add_column(column, justify="left" if column == "model" else "right")
        for r in rows:
            p = r.detail.policy.metrics()
            matched = r.detail.matched.metrics()["policy_waste_cost"]
            orders.add_row(
                r.candidate,
                f"{p['policy_waste_cost']:,.0f}",
                f"{p['policy_waste_share']:.1%}",
                f"{p['policy_stockout_rate']:.1%}",
                f"{p['policy_fill_rate']:.1%}",
                f"{p['policy_margin']:,.0f}",
                f"{matched:,.0f} ({_change(matched, naive['policy_waste_cost'])})",
                "-"
                if r is baseline
                else f"{r.detail.policy.markdowns:,} ({r.detail.policy.expected_waste_avoided:,.0f})",
            )
        lines: list[RenderableType] = [orders]
        champion = report.champion
        if champion is not None:
            m = champion.detail.policy.metrics()
            at_naive = champion.detail.matched.metrics()
            lines.append(
                Text(
                    f"champion {champion.candidate} against the naive forecast: WAPE {champion.test['wape']:.3f} vs "
                    f"{baseline.test['wape']:.3f}; as deployed, waste cost "
                    f"{_change(m['policy_waste_cost'], naive['policy_waste_cost'])} with "
                    f"{m['policy_stockout_rate']:.1%} stock-out days vs {naive['policy_stockout_rate']:.1%}; at the "
                    "naive policy's availability, waste cost "
                    f"{_change(at_naive['policy_waste_cost'], naive['policy_waste_cost'])} and margin "
                    f"{at_naive['policy_margin']:,.0f} vs {naive['policy_margin']:,.0f}"
                )
            )
        lines.append(self.quality.table())
        return lines


def _markdown_forecasts(predict: Predict, frame: pd.DataFrame, inputs: tuple[str, ...]) -> dict[float, np.ndarray]:
    """The model's forecast of every test row at each candidate markdown depth."""
    names = list(inputs)
    rows = frame[names].to_dict("records")
    return {
        depth: np.asarray(
            predict(pd.DataFrame([markdown_scenario(row, depth) for row in rows], columns=names)), dtype=np.float64
        )
        for depth in MARKDOWN_DEPTHS
    }


def _frontier_plot(
    points: list[tuple[float, float]],
    naive: list[tuple[float, float]],
    deployed: PolicyOutcome,
    naive_deployed: PolicyOutcome,
    candidate: str,
) -> Figure:
    """Waste against stock-outs as the spread widens, for this forecast and the naive one."""
    fig = Figure(figsize=plots.FIGSIZE, dpi=plots.DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(f"{candidate}: waste against stock-outs on the test window", fontsize=13)
    ax.set_xlabel("Store × product × days out of stock (share)", fontsize=11)
    ax.set_ylabel("Waste, cost of goods", fontsize=11)
    ax.grid(True, alpha=0.3)
    for curve, policy, color, label in (
        (naive, naive_deployed, plots.REFERENCE, "same weekday last week"),
        (points, deployed, plots.COLOR, candidate),
    ):
        ax.plot([p[0] for p in curve], [p[1] for p in curve], "o-", color=color, lw=2, label=label)
        m = policy.metrics()
        ax.plot([m["policy_stockout_rate"]], [m["policy_waste_cost"]], "*", color=color, markersize=16)
    ax.axvline(MAX_STOCKOUT_RATE, color="black", ls=":", lw=1, label="availability target (★ deployed)")
    ax.legend(loc="upper right", fontsize=10)
    return fig


def _change(value: float, reference: float) -> str:
    return f"{(value - reference) / reference:+.0%}" if reference else "n/a"


class StoreJob:
    unit = "receipt lines"
    default_size = 400_000
    default_days = 182

    def simulate(self, out_dir: Path, *, size: int, days: int, seed: int, fmt: str, advance: Advance) -> str:
        from training.simulators.store import simulate_store

        result = simulate_store(out_dir, n_sales=size, days=days, seed=seed, fmt=fmt, progress=advance)  # type: ignore[arg-type]
        faulty = sum(sum(kinds.values()) for kinds in result.truth["dead_letters"].values())
        repeated = sum(result.truth["duplicates"].values())
        return (
            f"{result.n_sales:,} receipt lines of {result.n_stores} stores × {result.n_products} products over "
            f"{result.days} days, with deliveries, stock counts, price changes and day closes, to {out_dir}; "
            f"{faulty:,} faulty and {repeated:,} repeated records planted (counted in truth.json)"
        )

    def task(self, fs: FeatureSet, db: Path, options: TrainOptions) -> StoreTask:
        return StoreTask(fs, quality_summary(db, fs))


JOB = StoreJob()
