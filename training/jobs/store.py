"""Store waste: simulate the chain's feeds; train demand forecasts and replay the orders they drive.

Every candidate and the naive forecast (same weekday last week) get one MLflow run with the
same parameters, metric names and plots: forecast errors on validation and test (`mae`, `rmse`,
`wape`, `bias`), then the policy simulation on the test window (waste, stock-outs, margin of the
orders the forecast drives, and markdown suggestions) and the data-quality counts of the load.
The candidates are registered as versions of one pyfunc model; the best validation WAPE is
`champion`, the others `challenger-<candidate>`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.models import infer_signature
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from threadpoolctl import threadpool_limits

from features.featureset import FeatureSet
from features.store.policy import MARKDOWN_DEPTHS, Spread, markdown_scenario
from training import plots
from training.datasets import Splits, Windows
from training.jobs import Advance, TrainOptions
from training.store_forecast import (
    CANDIDATES,
    NAIVE,
    NAIVE_FEATURE,
    ForecastModel,
    dataset_fingerprint,
    forecast_metrics,
    forecast_plot,
    importance_plot,
    load_splits,
    model_params,
    windows_for,
)
from training.store_policy import MAX_STOCKOUT_RATE, PolicyOutcome, calibrate, frontier, simulate
from training.store_quality import QualitySummary, quality_summary

PIP_REQUIREMENTS = ["scikit-learn", "xgboost", "pandas", "numpy"]
_MATCHED = ("policy_waste_cost", "policy_stockout_rate", "policy_margin")


@dataclass
class Result:
    """One forecast's numbers: its run, registry version and alias, errors and policy outcome."""

    candidate: str
    run_id: str
    version: str | None
    spread: Spread
    spread_factor: float
    validation: dict[str, float]
    test: dict[str, float]
    policy: PolicyOutcome
    """Orders with the spread calibrated on validation: the policy as deployed."""
    matched: PolicyOutcome
    """Orders with the spread that meets the naive policy's test availability exactly."""
    fit_seconds: float
    alias: str = ""


@dataclass
class StoreReport:
    experiment: str
    model_name: str
    windows: Windows
    rows: tuple[int, int, int]
    baseline: Result
    results: list[Result] = field(default_factory=list)


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

    def train(self, fs: FeatureSet, db: Path, options: TrainOptions, advance: Advance) -> RenderableType:
        candidates = options.candidates or tuple(CANDIDATES)
        unknown = sorted(set(candidates) - set(CANDIDATES))
        if unknown:
            raise ValueError(
                f"unknown candidates {unknown} for the store use case; expected some of {sorted(CANDIDATES)}"
            )
        given = [options.train_start, options.validation_start, options.train_end, options.test_start, options.test_end]
        data = load_splits(db, fs, windows_for(db, fs, given))
        quality = quality_summary(db, fs)
        report = train_forecasts(fs, data, quality, options.model_name, candidates, options.seed, lambda _: advance(1))
        return render(report, quality)


def train_forecasts(
    fs: FeatureSet,
    data: Splits,
    quality: QualitySummary,
    model_name: str,
    candidates: Sequence[str] = tuple(CANDIDATES),
    seed: int = 7,
    on_fitted: Callable[[str], None] | None = None,
) -> StoreReport:
    """Fit, evaluate, simulate, log and register every candidate; set the aliases.

    Models fit and predict on one thread (see `training.store_forecast.CANDIDATES`).
    """
    with threadpool_limits(1):
        return _train_forecasts(fs, data, quality, model_name, candidates, seed, on_fitted)


def _train_forecasts(
    fs: FeatureSet,
    data: Splits,
    quality: QualitySummary,
    model_name: str,
    candidates: Sequence[str],
    seed: int,
    on_fitted: Callable[[str], None] | None,
) -> StoreReport:
    names = list(fs.feature_names)
    experiment = mlflow.set_experiment(fs.name)
    fingerprints = {split: dataset_fingerprint(getattr(data, split), fs) for split in ("train", "validation", "test")}
    common = {
        "use_case": fs.name,
        "featureset_version": fs.version,
        **{f"dataset_fingerprint_{k}": v for k, v in fingerprints.items()},
        **data.windows.as_params(),
        "n_train": len(data.train),
        "n_validation": len(data.validation),
        "n_test": len(data.test),
        "markdown_depths": ",".join(f"{d:g}" for d in MARKDOWN_DEPTHS),
        "max_stockout_rate": MAX_STOCKOUT_RATE,
    }
    tags = {"featureset_version": fs.version, "use_case": fs.name}
    y_val = data.validation["label"].to_numpy(dtype=np.float64)
    y_test = data.test["label"].to_numpy(dtype=np.float64)
    naive_val = data.validation[NAIVE_FEATURE].to_numpy(dtype=np.float64)
    naive_test = data.test[NAIVE_FEATURE].to_numpy(dtype=np.float64)

    with mlflow.start_run(run_name=NAIVE, tags=tags | {"candidate": NAIVE}) as run:
        spread, factor = calibrate(data.validation, naive_val, Spread.fit(y_val, naive_val))
        naive_policy = simulate(data.test, naive_test, spread)
        naive_frontier = frontier(data.test, naive_test, spread)
        baseline = Result(
            NAIVE,
            run.info.run_id,
            None,
            spread,
            factor,
            forecast_metrics(y_val, naive_val),
            forecast_metrics(y_test, naive_test),
            naive_policy,
            naive_policy,
            0.0,
        )
        _log(baseline, common, quality)
        _log_figures(
            {
                "forecast_vs_actual.png": forecast_plot(data.test, naive_test, naive_test, f"{NAIVE}: test window"),
                "policy_frontier.png": _frontier_plot(
                    naive_frontier, naive_frontier, naive_policy, naive_policy, NAIVE
                ),
            }
        )
    naive_availability = naive_policy.metrics()["policy_stockout_rate"]
    report = StoreReport(
        experiment.name, model_name, data.windows, (len(data.train), len(data.validation), len(data.test)), baseline
    )

    x_train = data.train[names].to_numpy(dtype=np.float64)
    y_train = data.train["label"].to_numpy(dtype=np.float64)
    for candidate in candidates:
        with mlflow.start_run(run_name=candidate, tags=tags | {"candidate": candidate}) as run:
            estimator = CANDIDATES[candidate](seed)
            mlflow.log_params({f"model_{k}": v for k, v in model_params(estimator).items()})
            started = time.perf_counter()
            estimator.fit(x_train, y_train)
            fit_seconds = time.perf_counter() - started
            model = ForecastModel(estimator, fs.feature_names)
            val_forecast = model.predict(None, data.validation)
            model.spread, factor = calibrate(data.validation, val_forecast, Spread.fit(y_val, val_forecast))
            test_forecast = model.predict(None, data.test)
            scenarios = _markdown_forecasts(model, data.test)
            matched_spread, _ = calibrate(data.test, test_forecast, model.spread, naive_availability)
            result = Result(
                candidate,
                run.info.run_id,
                None,
                model.spread,
                factor,
                forecast_metrics(y_val, val_forecast),
                forecast_metrics(y_test, test_forecast),
                simulate(data.test, test_forecast, model.spread, scenarios),
                simulate(data.test, test_forecast, matched_spread),
                fit_seconds,
            )
            _log(result, common, quality)
            _log_inputs(fs, data)
            _log_figures(
                {
                    "forecast_vs_actual.png": forecast_plot(
                        data.test, test_forecast, naive_test, f"{candidate}: test window"
                    ),
                    "feature_importance.png": importance_plot(
                        estimator, names, data.validation, f"{candidate}: feature importance"
                    ),
                    "policy_frontier.png": _frontier_plot(
                        frontier(data.test, test_forecast, model.spread),
                        naive_frontier,
                        result.policy,
                        naive_policy,
                        candidate,
                    ),
                }
            )
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model,
                signature=infer_signature(data.validation[names].head(100).astype("float64"), val_forecast[:100]),
                pip_requirements=PIP_REQUIREMENTS,
                registered_model_name=model_name,
            )
            result.version = str(info.registered_model_version) if info.registered_model_version else None
            if result.version:
                client = MlflowClient()
                version_tags = tags | {
                    "candidate": candidate,
                    "spread_quantiles": json.dumps([round(q, 6) for q in model.spread.quantiles]),
                    "run_id": run.info.run_id,
                }
                for key, value in version_tags.items():
                    client.set_model_version_tag(model_name, result.version, key, str(value))
            report.results.append(result)
        if on_fitted is not None:
            on_fitted(candidate)
    _set_aliases(report)
    return report


def _markdown_forecasts(model: ForecastModel, frame: pd.DataFrame) -> dict[float, np.ndarray]:
    """The model's forecast of every test row at each candidate markdown depth."""
    names = list(model.feature_names)
    rows = frame[names].to_dict("records")
    return {
        depth: model.predict(None, pd.DataFrame([markdown_scenario(row, depth) for row in rows], columns=names))
        for depth in MARKDOWN_DEPTHS
    }


def _log(result: Result, common: dict[str, Any], quality: QualitySummary) -> None:
    mlflow.log_params(common | {"candidate": result.candidate})
    mlflow.log_metrics(
        {f"val_{k}": v for k, v in result.validation.items()}
        | {f"test_{k}": v for k, v in result.test.items()}
        | {f"test_{k}": v for k, v in result.policy.metrics().items()}
        | {f"test_{k}_at_naive_availability": v for k, v in result.matched.metrics().items() if k in _MATCHED}
        | {"spread_factor": result.spread_factor, "fit_seconds": result.fit_seconds}
        | quality.metrics()
    )


def _log_inputs(fs: FeatureSet, data: Splits) -> None:
    for context, frame in (("training", data.train), ("validation", data.validation), ("test", data.test)):
        dataset = mlflow.data.from_pandas(
            frame[[*fs.feature_names, "label"]], targets="label", name=f"{fs.name}-{context}-{fs.version}"
        )
        mlflow.log_input(dataset, context=context)


def _log_figures(figures: dict[str, Figure]) -> None:
    for name, figure in figures.items():
        mlflow.log_figure(figure, f"plots/{name}")


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


def _set_aliases(report: StoreReport) -> None:
    client = MlflowClient()
    ranked = sorted(
        (r for r in report.results if r.version), key=lambda r: np.nan_to_num(r.validation["wape"], nan=np.inf)
    )
    for rank, result in enumerate(ranked):
        result.alias = "champion" if rank == 0 else f"challenger-{result.candidate.replace('_', '-')}"
        client.set_registered_model_alias(report.model_name, result.alias, result.version)  # type: ignore[arg-type]


def render(report: StoreReport, quality: QualitySummary) -> RenderableType:
    """The forecasts' errors, the orders they drive, and the load's data quality."""
    w = report.windows
    rows = [*report.results, report.baseline]
    errors = Table(title=f"{report.experiment}: demand forecasts, test {w.test_start:%Y-%m-%d} – {w.test_end:%Y-%m-%d}")
    for column in (
        "forecast",
        "version",
        "alias",
        "val WAPE",
        "test MAE",
        "test RMSE",
        "test WAPE",
        "test bias",
        "fit s",
    ):
        errors.add_column(column, justify="left" if column in ("forecast", "alias") else "right")
    for r in rows:
        errors.add_row(
            r.candidate,
            r.version or "-",
            r.alias or "-",
            f"{r.validation['wape']:.3f}",
            f"{r.test['mae']:.2f}",
            f"{r.test['rmse']:.2f}",
            f"{r.test['wape']:.3f}",
            f"{r.test['bias']:+.3f}",
            f"{r.fit_seconds:.1f}",
        )
    naive = report.baseline.policy.metrics()
    orders = Table(
        title=f"orders replayed on the test window, spread calibrated for at most {MAX_STOCKOUT_RATE:.0%} "
        "stock-out days on validation"
    )
    for column in (
        "forecast",
        "waste cost",
        "waste share",
        "stock-out days",
        "fill rate",
        "margin",
        f"waste cost at naive's {naive['policy_stockout_rate']:.1%} stock-out days",
        "markdowns (exp. waste avoided)",
    ):
        orders.add_column(column, justify="left" if column == "forecast" else "right")
    for r in rows:
        p = r.policy.metrics()
        matched = r.matched.metrics()["policy_waste_cost"]
        orders.add_row(
            r.candidate,
            f"{p['policy_waste_cost']:,.0f}",
            f"{p['policy_waste_share']:.1%}",
            f"{p['policy_stockout_rate']:.1%}",
            f"{p['policy_fill_rate']:.1%}",
            f"{p['policy_margin']:,.0f}",
            f"{matched:,.0f} ({_change(matched, naive['policy_waste_cost'])})",
            "-" if r is report.baseline else f"{r.policy.markdowns:,} ({r.policy.expected_waste_avoided:,.0f})",
        )
    n_train, n_validation, n_test = report.rows
    summary = Text(
        f"train {n_train:,} store×product×day rows from {w.train_start:%Y-%m-%d}, validation {n_validation:,} from "
        f"{w.validation_start:%Y-%m-%d}, test {n_test:,}; training labels as known at {w.cutoff:%Y-%m-%d}; "
        f"registered as {report.model_name}"
    )
    lines: list[RenderableType] = [summary, errors, orders]
    champion = next((r for r in report.results if r.alias == "champion"), None)
    if champion is not None:
        m = champion.policy.metrics()
        at_naive = champion.matched.metrics()
        lines.append(
            Text(
                f"champion {champion.candidate} against the naive forecast: WAPE {champion.test['wape']:.3f} vs "
                f"{report.baseline.test['wape']:.3f}; as deployed, waste cost "
                f"{_change(m['policy_waste_cost'], naive['policy_waste_cost'])} with {m['policy_stockout_rate']:.1%} "
                f"stock-out days vs {naive['policy_stockout_rate']:.1%}; at the naive policy's availability, "
                "waste cost "
                f"{_change(at_naive['policy_waste_cost'], naive['policy_waste_cost'])} and margin "
                f"{at_naive['policy_margin']:,.0f} vs {naive['policy_margin']:,.0f}"
            )
        )
    lines.append(quality.table())
    return Group(*lines)


def _change(value: float, reference: float) -> str:
    return f"{(value - reference) / reference:+.0%}" if reference else "n/a"


JOB = StoreJob()
