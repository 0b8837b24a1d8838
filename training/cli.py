"""Commands of the batch side: simulate, materialize, train, score."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from features.depersonalize import DEV_SECRET
from features.usecases import USE_CASES, build_featureset
from training.replay import Source

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)

UseCase = Annotated[str, typer.Argument(help=f"Use case: {', '.join(USE_CASES)}.")]
DataDir = Annotated[Path, typer.Option("--data-dir", envvar="SAMESTREAM_DATA_DIR", help="Folder of event files, one subfolder per use case.")]
DbPath = Annotated[Path, typer.Option("--db", envvar="SAMESTREAM_DB", help="DuckDB file of feature tables.")]
Secret = Annotated[str, typer.Option("--secret", envvar="SAMESTREAM_SECRET", help="Key of the pseudonyms (keyed HMAC). Set your own outside a laptop.", show_default=False)]
TrackingUri = Annotated[str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking store.")]

DEFAULT_DATA = Path("data")
DEFAULT_DB = Path("data/samestream.duckdb")
DEFAULT_TRACKING = "sqlite:///mlflow.db"


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def check_use_case(use_case: str) -> None:
    if use_case not in USE_CASES:
        raise typer.BadParameter(f"unknown use case {use_case!r}; expected one of {', '.join(USE_CASES)}")


def default_sources(use_case: str, data_dir: Path) -> list[Source]:
    """The event files `simulate` writes for a use case, whichever format is there."""
    folder = data_dir / use_case
    kinds = {"fraud": ("payment", "label")}[use_case]
    found = []
    for kind in kinds:
        stem = {"payment": "payments", "label": "labels"}[kind]
        matches = [folder / f"{stem}{ext}" for ext in (".parquet", ".jsonl", ".csv") if (folder / f"{stem}{ext}").exists()]
        if not matches:
            raise typer.BadParameter(f"no {stem} file in {folder}: run `samestream simulate {use_case}` or pass --events")
        found.append(Source(kind, matches[0]))
    return found


def parse_sources(events: list[str]) -> list[Source]:
    sources = []
    for item in events:
        kind, sep, path = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--events takes KIND=PATH (e.g. payment=payments.jsonl), got {item!r}")
        sources.append(Source(kind, Path(path)))
    return sources


@app.command()
def simulate(
    use_case: UseCase,
    data_dir: DataDir = DEFAULT_DATA,
    payments: Annotated[int, typer.Option(help="Number of payments.")] = 500_000,
    days: Annotated[int, typer.Option(help="Days of history.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 7,
    fmt: Annotated[str, typer.Option("--format", help="parquet or jsonl.")] = "parquet",
) -> None:
    """Write a realistic, reproducible history of events (with personal data) to event files."""
    check_use_case(use_case)
    if fmt not in ("parquet", "jsonl"):
        raise typer.BadParameter(f"--format must be parquet or jsonl, got {fmt!r}")
    from training.simulators.fraud import simulate_fraud

    with progress_bar() as bar:
        task = bar.add_task("simulate", total=payments)
        result = simulate_fraud(
            data_dir / use_case, n_payments=payments, days=days, seed=seed, fmt=fmt,  # type: ignore[arg-type]
            progress=lambda n: bar.advance(task, n),
        )
    console.print(
        f"[green]wrote[/] {result.n_payments:,} payments ({result.n_fraud:,} fraud) to {result.payments}, "
        f"labels to {result.labels}, merchants to {result.merchants}"
    )


@app.command()
def materialize(
    use_case: UseCase,
    data_dir: DataDir = DEFAULT_DATA,
    db: DbPath = DEFAULT_DB,
    events: Annotated[list[str] | None, typer.Option("--events", help="KIND=PATH of an event file (JSONL, CSV, Parquet); repeat. Default: the simulated files.")] = None,
    secret: Secret = DEV_SECRET,
    force: Annotated[bool, typer.Option(help="Replay even if these inputs were materialized already.")] = False,
) -> None:
    """Replay event files through the FeatureSet into DuckDB (idempotent, resumable)."""
    check_use_case(use_case)
    from training.materialize import materialize as run_materialize

    sources = parse_sources(events) if events else default_sources(use_case, data_dir)
    fs = build_featureset(use_case, data_dir / use_case, secret)
    tasks: dict[str, int] = {}
    with progress_bar() as bar:

        def advance(step: str, n: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.advance(tasks[step], n)

        report = run_materialize(fs, sources, db, progress=advance, force=force)
    if report.skipped:
        console.print(f"[yellow]already materialized[/]: these inputs with FeatureSet {report.featureset_version} are in {db} (use --force to replay)")
        return
    console.print(
        f"[green]materialized[/] {report.events_read:,} events in {report.seconds:.1f} s "
        f"({report.events_per_second:,.0f} events/s): {report.rows_written:,} feature rows, "
        f"{report.labels_written:,} labels, {report.dead_letters:,} dead letters → {db}"
    )


def _date(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


@app.command()
def train(
    use_case: UseCase,
    data_dir: DataDir = DEFAULT_DATA,
    db: DbPath = DEFAULT_DB,
    secret: Secret = DEV_SECRET,
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
    model_name: Annotated[str | None, typer.Option(help="Registered model name (default <use case>-detector).")] = None,
    candidates: Annotated[list[str] | None, typer.Option("--candidate", help="Candidates to fit; repeat. Default: all.")] = None,
    train_start: Annotated[str | None, typer.Option(help="ISO date; default: 7 days after the first event.")] = None,
    validation_start: Annotated[str | None, typer.Option(help="ISO date; default: 10 days before train end.")] = None,
    train_end: Annotated[str | None, typer.Option(help="ISO date; default: test start minus the 7-day feedback delay.")] = None,
    test_start: Annotated[str | None, typer.Option(help="ISO date; also the cut-off for training labels.")] = None,
    test_end: Annotated[str | None, typer.Option(help="ISO date; default: the last event.")] = None,
) -> None:
    """Train the candidates on a point-in-time training set; log and register them in MLflow."""
    check_use_case(use_case)
    import mlflow

    from training.datasets import Windows, default_windows, time_span
    from training.store import connect
    from training.train import load_splits
    from training.train import train as run_train

    mlflow.set_tracking_uri(tracking_uri)
    fs = build_featureset(use_case, data_dir / use_case, secret)
    given = [train_start, validation_start, train_end, test_start, test_end]
    windows = None
    if any(given):
        con = connect(db, read_only=True)
        try:
            defaults = default_windows(*time_span(con, fs))
        finally:
            con.close()
        windows = Windows(*(_date(v) or d for v, d in zip(given, vars(defaults).values(), strict=True)))
    with console.status("reading the point-in-time training set from DuckDB"):
        data = load_splits(db, fs, windows)
    console.print(
        f"training {len(data.train):,} rows, validation {len(data.validation):,}, test {len(data.test):,}; "
        f"labels known by {data.windows.cutoff:%Y-%m-%d %H:%M}"
    )
    from training.candidates import CANDIDATES

    chosen = candidates or list(CANDIDATES)
    with progress_bar() as bar:
        task = bar.add_task("train", total=len(chosen))
        report = run_train(
            fs, data, model_name or f"{use_case}-detector", chosen,
            on_fitted=lambda name: bar.update(task, advance=1, description=name),
        )
    print_report(report, tracking_uri)


def print_report(report, tracking_uri: str) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"{report.experiment}: models on the test window (labels known at the end)")
    for column in ("model", "version", "alias", "val AP", "test ROC AUC", "test AP", "card prec. top-k", "cost / 1k payments", "fit s"):
        table.add_column(column, justify="left" if column in ("model", "alias") else "right")
    rows = [*report.results, report.baseline] if report.baseline else report.results
    for r in rows:
        table.add_row(
            r.candidate, r.version or "-", r.alias or "-",
            f"{r.validation['average_precision']:.3f}", f"{r.test['roc_auc']:.3f}", f"{r.test['average_precision']:.3f}",
            f"{r.test['card_precision_top_k']:.3f}", f"{r.test['expected_cost_per_1k']:.1f}", f"{r.fit_seconds:.1f}",
        )
    Console(width=max(Console().width, 140)).print(table)
    console.print(
        f"registered as [bold]{report.model_name}[/] (aliases above) in {tracking_uri}\n"
        "next: [bold]make ui[/] to compare runs in the MLflow UI · [bold]make notebook[/] to explore the DuckDB tables · "
        f"[bold]samestream score {report.experiment} --model models:/{report.model_name}@champion[/] to backtest a file"
    )


@app.command()
def score(
    use_case: UseCase,
    model: Annotated[str, typer.Option(help="Model URI, e.g. models:/fraud-detector@champion or models:/fraud-detector/3.")],
    out: Annotated[Path, typer.Option(help="Where scores go: .parquet, .csv, or .duckdb (table <use case>_scores).")] = Path("data/scores.parquet"),
    data_dir: DataDir = DEFAULT_DATA,
    events: Annotated[list[str] | None, typer.Option("--events", help="KIND=PATH of an event file; repeat. Default: the simulated files.")] = None,
    secret: Secret = DEV_SECRET,
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
) -> None:
    """Backtest: score event files with any registered model version through the same features."""
    check_use_case(use_case)
    import mlflow

    from training.backtest import score as run_score
    from training.backtest import write_scores

    mlflow.set_tracking_uri(tracking_uri)
    sources = parse_sources(events) if events else default_sources(use_case, data_dir)
    fs = build_featureset(use_case, data_dir / use_case, secret)
    with console.status(f"scoring with {model}"):
        scores, dead = run_score(fs, sources, model)
        where = write_scores(scores, out, use_case)
    console.print(f"[green]scored[/] {len(scores):,} rows with {model} → {where}; {dead:,} dead letters")

