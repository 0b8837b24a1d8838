"""Fraud: simulate payments and labels; train classifiers against the amount rule."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from features.featureset import FeatureSet
from training.candidates import CANDIDATES
from training.datasets import Windows, default_windows, time_span
from training.jobs import Advance, TrainOptions
from training.store import connect
from training.train import TrainReport, load_splits, train


class FraudJob:
    unit = "payments"
    default_size = 500_000
    default_days = 90

    def simulate(self, out_dir: Path, *, size: int, days: int, seed: int, fmt: str, advance: Advance) -> str:
        from training.simulators.fraud import simulate_fraud

        result = simulate_fraud(out_dir, n_payments=size, days=days, seed=seed, fmt=fmt, progress=advance)  # type: ignore[arg-type]
        return (
            f"{result.n_payments:,} payments ({result.n_fraud:,} fraud) to {result.payments}, "
            f"labels to {result.labels}, merchants to {result.merchants}"
        )

    def train(self, fs: FeatureSet, db: Path, options: TrainOptions, advance: Advance) -> RenderableType:
        windows = None
        given = [options.train_start, options.validation_start, options.train_end, options.test_start, options.test_end]
        if any(given):
            con = connect(db, read_only=True)
            try:
                defaults = default_windows(*time_span(con, fs))
            finally:
                con.close()
            windows = Windows(*(v or d for v, d in zip(given, vars(defaults).values(), strict=True)))
        data = load_splits(db, fs, windows)
        report = train(
            fs,
            data,
            options.model_name,
            options.candidates or tuple(CANDIDATES),
            options.seed,
            on_fitted=lambda _: advance(1),
        )
        return render(report, len(data.train), len(data.validation), len(data.test))


def render(report: TrainReport, n_train: int, n_validation: int, n_test: int) -> RenderableType:
    w = report.windows
    table = Table(
        title=f"{report.experiment}: models on the test window {w.test_start:%Y-%m-%d} – {w.test_end:%Y-%m-%d}"
    )
    for column in (
        "model",
        "version",
        "alias",
        "val AP",
        "test ROC AUC",
        "test AP",
        "card prec. top-k",
        "cost / 1k payments",
        "fit s",
    ):
        table.add_column(column, justify="left" if column in ("model", "alias") else "right")
    rows = [*report.results, report.baseline] if report.baseline else report.results
    for r in rows:
        table.add_row(
            r.candidate,
            r.version or "-",
            r.alias or "-",
            f"{r.validation['average_precision']:.3f}",
            f"{r.test['roc_auc']:.3f}",
            f"{r.test['average_precision']:.3f}",
            f"{r.test['card_precision_top_k']:.3f}",
            f"{r.test['expected_cost_per_1k']:.1f}",
            f"{r.fit_seconds:.1f}",
        )
    summary = Text(
        f"train {n_train:,} rows from {w.train_start:%Y-%m-%d}, validation {n_validation:,} from "
        f"{w.validation_start:%Y-%m-%d}, test {n_test:,}; training labels as known at {w.cutoff:%Y-%m-%d}; "
        f"registered as {report.model_name}"
    )
    return Group(summary, table)


JOB = FraudJob()
