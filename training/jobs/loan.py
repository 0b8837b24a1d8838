"""Loan offers: simulate applications and their world; train acceptance models and value their rates."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from features.featureset import FeatureSet
from features.loan.pricing import PricingPolicy
from training.datasets import Windows
from training.jobs import Advance, TrainOptions
from training.loan_policy import load_truth
from training.loan_train import CANDIDATES, LoanTrainReport, default_loan_windows, load_loan_splits, train_loan

TRUTH_FILE = "ground_truth.parquet"


class LoanJob:
    unit = "applications"
    default_size = 50_000
    default_days = 180

    def simulate(self, out_dir: Path, *, size: int, days: int, seed: int, fmt: str, advance: Advance) -> str:
        from training.simulators.loan import simulate_loan

        result = simulate_loan(out_dir, n_applications=size, days=days, seed=seed, fmt=fmt, progress=advance)  # type: ignore[arg-type]
        return (
            f"{result.n_applications:,} applications ({result.n_accepted:,} offers taken), "
            f"{result.n_events:,} events in {', '.join(p.name for p in result.files.values())}, "
            f"master scale and ground truth to {result.folder}"
        )

    def train(self, fs: FeatureSet, db: Path, options: TrainOptions, advance: Advance) -> RenderableType:
        windows = None
        given = [options.train_start, options.validation_start, options.train_end, options.test_start, options.test_end]
        if any(given):
            defaults = default_loan_windows(db, fs)
            windows = Windows(*(v or d for v, d in zip(given, vars(defaults).values(), strict=True)))
        data = load_loan_splits(db, fs, windows)
        truth_path = options.data_dir / TRUTH_FILE
        report = train_loan(
            fs,
            data,
            options.model_name,
            options.candidates or CANDIDATES,
            options.seed,
            PricingPolicy(),
            load_truth(truth_path) if truth_path.exists() else None,
            on_fitted=lambda _: advance(1),
        )
        return render(report, truth_path)


def _money(value: float) -> str:
    return "-" if value != value else f"{value:,.1f}"


def render(report: LoanTrainReport, truth_path: Path) -> RenderableType:
    w = report.windows
    truth = report.has_truth
    window = f"{w.test_start:%Y-%m-%d} – {w.test_end:%Y-%m-%d}"
    models = Table(title=f"{report.experiment}: acceptance models on the test window {window}")
    for column in (
        "model",
        "version",
        "alias",
        "val log loss",
        "test ROC AUC",
        "test log loss",
        "test Brier",
        "EV/app truth",
        "EV/app offline",
        "vs best fixed: truth",
        "offline",
        "mean rate",
        "fit s",
    ):
        models.add_column(column, justify="left" if column in ("model", "alias") else "right")
    rows = [*report.results, report.baseline] if report.baseline else report.results
    for r in rows:
        t = r.test
        models.add_row(
            r.candidate,
            r.version or "-",
            r.alias or "-",
            f"{r.validation['log_loss']:.4f}",
            f"{t['roc_auc']:.3f}",
            f"{t['log_loss']:.4f}",
            f"{t['brier']:.4f}",
            _money(t.get("ev_truth", float("nan"))),
            f"{_money(t['ev_offline'])} (n={int(t['offline_matches'])})",
            f"{t['uplift_vs_best_fixed_truth']:+.1%}" if truth else "-",
            f"{t['uplift_vs_fixed_offline']:+.1%}",
            f"{t['mean_rate']:.2%}",
            f"{r.fit_seconds:.1f}",
        )
    ref = report.reference["test"]
    policies = Table(title="pricing policies on the test window: expected value per application")
    for column in ("policy", "EV/app truth", "EV/app offline"):
        policies.add_column(column, justify="left" if column == "policy" else "right")
    champion = next((r for r in report.results if r.alias == "champion"), None)
    if champion is not None:
        policies.add_row(
            f"champion's rates ({champion.candidate})",
            _money(champion.test.get("ev_truth", float("nan"))),
            _money(champion.test["ev_offline"]),
        )
        policies.add_row(
            f"best fixed rate (by truth {ref.best_fixed_rate_truth:.2%}; "
            f"offline, chosen on validation {champion.test['fixed_rate_offline']:.2%})",
            _money(ref.best_fixed_truth),
            _money(champion.test["fixed_offline"]),
        )
    policies.add_row("historical randomized rates", _money(ref.historical_truth), _money(ref.historical_offline))
    policies.add_row("oracle (true acceptance and PD)", _money(ref.oracle_truth), "-")
    n = report.n_rows
    p = report.policy
    summary = Text(
        f"train {n['train']:,} applications from {w.train_start:%Y-%m-%d}, validation {n['validation']:,} from "
        f"{w.validation_start:%Y-%m-%d}, test {n['test']:,}; outcomes as known at {w.cutoff:%Y-%m-%d}; rates "
        f"{p.floor:.2%}–{p.cap:.2%} in steps of {p.step:.2%}, funding {p.funding_rate:.2%}, LGD {p.lgd:.0%}; "
        f"registered as {report.model_name}"
        + ("" if truth else f"; no ground truth at {truth_path}, so rates are valued offline only")
    )
    return Group(summary, models, policies)


JOB = LoanJob()
