"""Commands of the batch side: simulate, materialize, train, score."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from features.depersonalize import DEV_SECRET
from features.featureset import FeatureSet
from features.mapping import OPTIONS, Mapping, MappingError, from_command_line
from features.usecases import USE_CASES, build_featureset, get_use_case
from training.jobs import TrainOptions, get_job
from training.jobs import train as train_use_case
from training.jobs.fraud import FraudJob
from training.replay import Source, sources_in

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)

UseCase = Annotated[str, typer.Argument(help=f"Use case: {', '.join(USE_CASES)} or a registered one.")]
DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="SAMESTREAM_DATA_DIR", help="Folder of event files, one subfolder per use case."),
]
DbPath = Annotated[Path, typer.Option("--db", envvar="SAMESTREAM_DB", help="DuckDB file of feature tables.")]
Secret = Annotated[
    str,
    typer.Option(
        "--secret",
        envvar="SAMESTREAM_SECRET",
        help="Key of the pseudonyms (keyed HMAC). Set your own outside a laptop.",
        show_default=False,
    ),
]
TrackingUri = Annotated[
    str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking store.")
]

MAPPING_PANEL = "Input mapping (README: Your own files)"


def _mapping_option(name: str) -> Any:
    return typer.Option(name, help=OPTIONS[name], rich_help_panel=MAPPING_PANEL, show_default=False)


MappingFile = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        help="TOML file: how each kind's rows become events (renames, casts, time zone, constants, labels).",
        rich_help_panel=MAPPING_PANEL,
    ),
]
Pairs = list[str] | None
Rename = Annotated[Pairs, _mapping_option("--rename")]
Cast = Annotated[Pairs, _mapping_option("--cast")]
Const = Annotated[Pairs, _mapping_option("--const")]
Drop = Annotated[Pairs, _mapping_option("--drop")]
Timezone = Annotated[str | None, _mapping_option("--timezone")]
LabelFrom = Annotated[str | None, _mapping_option("--label-from")]
LabelDelay = Annotated[str | None, _mapping_option("--label-delay")]
LabelField = Annotated[Pairs, _mapping_option("--label-field")]
LabelKind = Annotated[str | None, _mapping_option("--label-kind")]
LabelInto = Annotated[str | None, _mapping_option("--label-into")]
LabelAt = Annotated[str | None, _mapping_option("--label-at")]
LabelSince = Annotated[str | None, _mapping_option("--label-since")]

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
    try:
        get_use_case(use_case)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def default_sources(use_case: str, data_dir: Path) -> list[Source]:
    """The event files `simulate` writes for a use case, whichever format is there."""
    try:
        return sources_in(get_use_case(use_case).files, data_dir / use_case)
    except FileNotFoundError as exc:
        raise typer.BadParameter(f"{exc}: run `samestream simulate {use_case}` or pass --events KIND=PATH") from None


def input_mapping(file: Path | None, events: list[str] | None, options: dict[str, Any]) -> Mapping | None:
    """The mapping given by --mapping or the mapping options (which map the one --events kind)."""
    kinds = [item.partition("=")[0] for item in events or []]
    try:
        return from_command_line(file, kinds, options)
    except MappingError as exc:
        raise typer.BadParameter(str(exc)) from None


def mapped_sources(use_case: str, data_dir: Path, events: list[str] | None, mapping: Mapping | None) -> list[Source]:
    """--events, else the files a TOML mapping names, else the simulated files."""
    if events:
        return parse_sources(events)
    if mapping is not None and mapping.files:
        return [Source(kind, path) for kind, path in mapping.files.items()]
    return default_sources(use_case, data_dir)


def check_mapping(mapping: Mapping | None, fs: FeatureSet) -> None:
    """Check the mapping against the schemas before a row is read; name what it leaves unprovided."""
    if mapping is None:
        return
    try:
        missing = mapping.check(fs.schemas)
    except MappingError as exc:
        raise typer.BadParameter(str(exc)) from None
    for kind, names in missing.items():
        console.print(
            f"[yellow]note[/]: the mapping of {kind} provides no {', '.join(names)}: "
            "columns of those very names must (else every event is rejected for them)"
        )


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
    size: Annotated[
        int | None, typer.Option(help="Number of main events (payments, applications, sales); default per use case.")
    ] = None,
    days: Annotated[int | None, typer.Option(help="Days of history; default per use case.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 7,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (the wire format of the topics) or parquet.")] = "jsonl",
    difficulty: Annotated[
        str | None, typer.Option(help="fraud only: hard (default, realistic) or easy (frauds stand out).")
    ] = None,
) -> None:
    """Write a realistic, reproducible history of events (with personal data) to event files."""
    check_use_case(use_case)
    if fmt not in ("parquet", "jsonl"):
        raise typer.BadParameter(f"--format must be parquet or jsonl, got {fmt!r}")
    job = get_job(use_case)
    if difficulty is not None and not isinstance(job, FraudJob):
        raise typer.BadParameter("--difficulty applies to the fraud use case only")
    if difficulty not in (None, "hard", "easy"):
        raise typer.BadParameter(f"--difficulty must be hard or easy, got {difficulty!r}")
    total = size or job.default_size
    with progress_bar() as bar:
        task = bar.add_task("simulate", total=total)
        advance = lambda n: bar.advance(task, n)  # noqa: E731
        if isinstance(job, FraudJob):
            summary = job.simulate(
                data_dir / use_case,
                size=total,
                days=days or job.default_days,
                seed=seed,
                fmt=fmt,
                advance=advance,
                difficulty=difficulty or "hard",
            )
        else:
            summary = job.simulate(
                data_dir / use_case, size=total, days=days or job.default_days, seed=seed, fmt=fmt, advance=advance
            )
    console.print(f"[green]wrote[/] {summary}")


@app.command()
def materialize(
    use_case: UseCase,
    data_dir: DataDir = DEFAULT_DATA,
    db: DbPath = DEFAULT_DB,
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--events", help="KIND=PATH of an event file (JSONL, CSV, Parquet); repeat. Default: the simulated files."
        ),
    ] = None,
    secret: Secret = DEV_SECRET,
    force: Annotated[
        bool,
        typer.Option(help="Replay even if these inputs were materialized already; replaces earlier dead letters."),
    ] = False,
    workers: Annotated[
        int, typer.Option(help="Processes to replay on: events split by key hash, the same rows as one.")
    ] = 1,
    max_rejected: Annotated[
        float,
        typer.Option(
            help="Fail (exit 1) when more than this share of the events is rejected; at 1.0, only when all are."
        ),
    ] = 1.0,
    fields: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated optional fields the events carry (`all` for every one); "
            "default: those most of the first 1,000 events of each file have."
        ),
    ] = None,
    merchants: Annotated[
        Path | None,
        typer.Option(help="Fraud: the merchant reference CSV (default <data dir>/fraud/merchants.csv if there)."),
    ] = None,
    mapping_file: MappingFile = None,
    rename: Rename = None,
    cast: Cast = None,
    const: Const = None,
    drop: Drop = None,
    timezone: Timezone = None,
    label_from: LabelFrom = None,
    label_delay: LabelDelay = None,
    label_field: LabelField = None,
    label_kind: LabelKind = None,
    label_into: LabelInto = None,
    label_at: LabelAt = None,
    label_since: LabelSince = None,
) -> None:
    """Replay event files through the FeatureSet into DuckDB (idempotent, resumable).

    Files in your own column names load through an input mapping (--mapping FILE.toml, or the
    mapping options for the one --events kind). The FeatureSet is built for the optional fields
    the events carry, recorded in <data dir>/<use case>/featureset.json for every later command.
    Ends with the dead letters by reason, an example each; exits 1 when too many events were
    rejected (--max-rejected; by default, when every one was).
    """
    check_use_case(use_case)
    from features.fields import RECORD, BuiltFor, read_record, write_record

    if workers < 1:
        raise typer.BadParameter("--workers must be at least 1")
    if not 0.0 <= max_rejected <= 1.0:
        raise typer.BadParameter("--max-rejected is a share of the events, from 0.0 to 1.0")
    options = {
        "--rename": rename,
        "--cast": cast,
        "--const": const,
        "--drop": drop,
        "--timezone": timezone,
        "--label-from": label_from,
        "--label-delay": label_delay,
        "--label-field": label_field,
        "--label-kind": label_kind,
        "--label-into": label_into,
        "--label-at": label_at,
        "--label-since": label_since,
    }
    mapping = input_mapping(mapping_file, events, options)
    sources = mapped_sources(use_case, data_dir, events, mapping)
    folder = data_dir / use_case
    try:
        fs = build_featureset(use_case, folder, secret)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    check_mapping(mapping, fs)
    if merchants is not None and use_case != "fraud":
        raise typer.BadParameter(f"--merchants is the fraud merchant reference; the {use_case} use case has none")
    if merchants is not None and not merchants.exists():
        raise typer.BadParameter(f"--merchants {merchants}: no such file")
    if not fs.groups and fields is not None:
        raise typer.BadParameter(f"--fields: the {use_case} use case has no optional feature groups")
    previous = read_record(folder)
    refs = (
        {"merchants": str(merchants.resolve())} if merchants is not None else (previous.references if previous else {})
    )
    if fs.groups:
        write_record(folder, BuiltFor(_chosen_fields(fs, fields, sources, mapping), refs))
        fs = build_featureset(use_case, folder, secret)
        off = [g.name for g in fs.groups if g.name not in fs.enabled]
        console.print(
            f"feature groups on: {', '.join(fs.enabled) or 'none'}"
            + (f"; off (their fields or reference data absent): {', '.join(off)}" if off else "")
            + f" → {folder / RECORD}"
        )
    try:
        _run_materialize(use_case, fs, folder, db, sources, mapping, force, workers, max_rejected, refs)
    except BaseException as exc:  # a failed run leaves the record as it was: train builds what it built before
        if fs.groups and not (isinstance(exc, typer.Exit) and exc.exit_code == 0):
            if previous is None:
                (folder / RECORD).unlink(missing_ok=True)
            else:
                write_record(folder, previous)
        raise


def _chosen_fields(
    fs: FeatureSet, fields: str | None, sources: list[Source], mapping: Mapping | None
) -> tuple[str, ...] | None:
    """The optional fields named by --fields (None for `all`), else those the files carry."""
    from features.fields import present_fields

    optional = type(fs).optional_fields()
    if fields is None:
        return present_fields(fs.schemas, optional, [(s.kind, s.path) for s in sources], mapping)
    if fields.strip() == "all":
        return None
    chosen = tuple(sorted({f.strip() for f in fields.split(",") if f.strip()}))
    unknown = sorted(set(chosen) - optional)
    if unknown:
        raise typer.BadParameter(
            f"--fields: {', '.join(unknown)} are not optional fields of {fs.name}; "
            f"expected some of {', '.join(sorted(optional))}"
        )
    return chosen


def _run_materialize(
    use_case: str,
    fs: FeatureSet,
    folder: Path,
    db: Path,
    sources: list[Source],
    mapping: Mapping | None,
    force: bool,
    workers: int,
    max_rejected: float,
    refs: dict[str, str],
) -> None:
    from rich.table import Table

    from training.materialize import materialize as run_materialize

    references = [p for p in (folder / name for name in get_use_case(use_case).references) if p.exists()]
    references += [Path(path) for path in refs.values()]
    tasks: dict[str, TaskID] = {}
    with progress_bar() as bar:

        def advance(step: str, n: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.advance(tasks[step], n)

        report = run_materialize(
            fs,
            sources,
            db,
            progress=advance,
            force=force,
            workers=workers,
            references=references,
            mapping=mapping,
        )
    if report.skipped:
        console.print(
            f"[yellow]already materialized[/]: these inputs with FeatureSet {report.featureset_version} "
            f"are in {db} (use --force to replay)"
        )
        return
    console.print(
        f"[green]materialized[/] {report.events_read:,} events in {report.seconds:.1f} s "
        f"({report.events_per_second:,.0f} events/s): {report.rows_written:,} feature rows, "
        f"{report.labels_written:,} labels, {report.dead_letters:,} dead letters, {report.duplicates:,} repeats "
        f"dropped → {db}" + (f" ({report.workers} workers)" if report.workers > 1 else "")
    )
    if report.rejected:
        table = Table(title="dead letters by reason")
        for column in ("reason", "events", "first example", "where"):
            table.add_column(column, overflow="fold")
        for kind, rejection in sorted(report.rejected.items(), key=lambda item: -item[1].count):
            table.add_row(kind, f"{rejection.count:,}", rejection.example[:300], rejection.where)
        console.print(table)
    rejected = sum(r.count for r in report.rejected.values())
    if report.events_read and (rejected / report.events_read > max_rejected or rejected == report.events_read):
        console.print(
            f"[red]{rejected:,} of {report.events_read:,} events were rejected[/] "
            f"(more than --max-rejected {max_rejected:g}): fix the input (see the reasons above), map your "
            "columns, or raise --max-rejected"
        )
        raise typer.Exit(1)


def _date(value: str | None, option: str) -> datetime | None:
    """An ISO date or time from the command line, as naive UTC like the DuckDB timestamps."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{option} takes an ISO date or time such as 2026-01-31, got {value!r}") from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


@app.command()
def train(
    use_case: UseCase,
    data_dir: DataDir = DEFAULT_DATA,
    db: DbPath = DEFAULT_DB,
    secret: Secret = DEV_SECRET,
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
    model_name: Annotated[
        str | None, typer.Option(help="Registered model name (default per use case, e.g. fraud-detector).")
    ] = None,
    candidates: Annotated[
        list[str] | None, typer.Option("--candidate", help="Candidates to fit; repeat. Default: all.")
    ] = None,
    train_start: Annotated[
        str | None, typer.Option(help="ISO date; default: the use case's warm-up after the first event.")
    ] = None,
    validation_start: Annotated[
        str | None, typer.Option(help="ISO date; default: the use case's validation days before train end.")
    ] = None,
    train_end: Annotated[
        str | None, typer.Option(help="ISO date; default: test start minus the feedback delay.")
    ] = None,
    test_start: Annotated[
        str | None,
        typer.Option(help="ISO date; also the cut-off for training labels. Default: test days before test end."),
    ] = None,
    test_end: Annotated[
        str | None, typer.Option(help="ISO date; default: the test days after test start, else the last event.")
    ] = None,
    validation_fraction: Annotated[
        float | None,
        typer.Option(help="Validation as this share of the training window's end (instead of a number of days)."),
    ] = None,
    no_validation: Annotated[
        bool,
        typer.Option(
            "--no-validation",
            help="Register models fitted on the whole training window; thresholds and the champion are still "
            "chosen prequentially (fit before the validation start, judged after it).",
        ),
    ] = False,
    protocol: Annotated[
        str,
        typer.Option(
            help="How the champion is chosen: samestream (the validation window's metric) or field (the fraud "
            "field's protocol: card precision top-k averaged over prequential folds, models refitted on the "
            "whole training window)."
        ),
    ] = "samestream",
    top_k: Annotated[
        int, typer.Option(min=1, help="Cards analysts check a day, for the field's card precision.")
    ] = 100,
    folds: Annotated[
        int, typer.Option(min=1, help="Prequential train/delay/validation folds (field protocol and tuning).")
    ] = 4,
    tune_trials: Annotated[
        int,
        typer.Option(
            min=0, help="Budget of the hyperparameter search per candidate on the prequential folds (0: defaults)."
        ),
    ] = 0,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation", help="Refit the champion's candidate without each feature family in turn and report it."
        ),
    ] = False,
) -> None:
    """Train the candidates on a point-in-time training set; log and register them in MLflow.

    Window bounds not given are derived from the ones given (see `training.harness.resolve_windows`).
    """
    check_use_case(use_case)
    import mlflow

    options = TrainOptions(
        model_name=model_name or get_use_case(use_case).model_name,
        data_dir=data_dir / use_case,
        candidates=tuple(candidates) if candidates else None,
        train_start=_date(train_start, "--train-start"),
        validation_start=_date(validation_start, "--validation-start"),
        train_end=_date(train_end, "--train-end"),
        test_start=_date(test_start, "--test-start"),
        test_end=_date(test_end, "--test-end"),
        validation_fraction=validation_fraction,
        refit=no_validation,
        protocol=protocol,
        top_k=top_k,
        folds=folds,
        tune_trials=tune_trials,
        ablation=ablation,
    )
    mlflow.set_tracking_uri(tracking_uri)
    fs = build_featureset(use_case, data_dir / use_case, secret)
    with progress_bar() as bar:
        task = bar.add_task("train", total=None)
        try:
            report = train_use_case(use_case, fs, db, options, lambda n: bar.advance(task, n))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    Console(width=max(Console().width, 140)).print(report)
    console.print(
        f"models in {tracking_uri}\n"
        "next: [bold]make ui[/] to compare runs in the MLflow UI · "
        "[bold]make notebook[/] to explore the DuckDB tables · "
        f"[bold]samestream score {use_case} --model models:/{options.model_name}@champion[/] to backtest a file"
    )


@app.command()
def score(
    use_case: UseCase,
    model: Annotated[
        str | None,
        typer.Option(help="Model URI, e.g. models:/fraud-detector/3 (default: the use case's champion)."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Where scores go: .parquet, .csv, or .duckdb (table <use case>_scores).")
    ] = Path("data/scores.parquet"),
    data_dir: DataDir = DEFAULT_DATA,
    events: Annotated[
        list[str] | None,
        typer.Option("--events", help="KIND=PATH of an event file; repeat. Default: the simulated files."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="ISO date: score only rows with event time at or after it.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="ISO date: score only rows with event time before it.")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Loan: score every application at this offered rate (e.g. 0.08). Default: the rate each one was "
            "offered, from its outcome in the files; applications without an outcome are left out."
        ),
    ] = None,
    secret: Secret = DEV_SECRET,
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
    mapping_file: MappingFile = None,
    rename: Rename = None,
    cast: Cast = None,
    const: Const = None,
    drop: Drop = None,
    timezone: Timezone = None,
    label_from: LabelFrom = None,
    label_delay: LabelDelay = None,
    label_field: LabelField = None,
    label_kind: LabelKind = None,
    label_into: LabelInto = None,
    label_at: LabelAt = None,
    label_since: LabelSince = None,
) -> None:
    """Backtest: score event files with any registered model version through the same features.

    Files in your own column names are read through the mapping materialize took (--mapping,
    or the mapping options), with the FeatureSet materialize recorded for the data folder.
    """
    check_use_case(use_case)
    if rate is not None and use_case != "loan":
        raise typer.BadParameter(f"--rate is the loan model's offered rate; the {use_case} model takes no rate")
    if rate is not None and not 0.0 < rate < 1.0:
        raise typer.BadParameter(f"--rate is a yearly rate between 0 and 1, e.g. 0.08; got {rate}")
    import mlflow

    from features.loan.featureset import RATE_FEATURE
    from training.backtest import score as run_score
    from training.backtest import write_scores

    window = (_date(start, "--from"), _date(end, "--to"))
    model = model or f"models:/{get_use_case(use_case).model_name}@champion"
    mlflow.set_tracking_uri(tracking_uri)
    options = {
        "--rename": rename,
        "--cast": cast,
        "--const": const,
        "--drop": drop,
        "--timezone": timezone,
        "--label-from": label_from,
        "--label-delay": label_delay,
        "--label-field": label_field,
        "--label-kind": label_kind,
        "--label-into": label_into,
        "--label-at": label_at,
        "--label-since": label_since,
    }
    mapping = input_mapping(mapping_file, events, options)
    sources = mapped_sources(use_case, data_dir, events, mapping)
    fs = build_featureset(use_case, data_dir / use_case, secret)
    check_mapping(mapping, fs)
    with console.status(f"scoring with {model}"):
        result = run_score(
            fs,
            sources,
            model,
            *window,
            supplied={RATE_FEATURE: rate} if rate is not None else None,
            mapping=mapping,
            reasons=use_case == "fraud",
        )
        where = write_scores(result.scores, out, use_case)
    left_out = []
    if result.outside_window:
        left_out.append(f"{result.outside_window:,} rows outside the window")
    if result.without_inputs:
        left_out.append(f"{result.without_inputs:,} rows without an outcome to take the rate from (give --rate)")
    console.print(
        f"[green]scored[/] {len(result.scores):,} rows with {model} → {where}; {result.dead_letters:,} dead letters"
        + (f"; left out {', '.join(left_out)}" if left_out else "")
    )


@app.command()
def report(
    use_case: UseCase,
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
    model_name: Annotated[
        str | None, typer.Option(help="Registered model name (default per use case, e.g. loan-acceptance).")
    ] = None,
    db: DbPath = DEFAULT_DB,
    out: Annotated[Path | None, typer.Option(help="HTML page to write (default data/<use case>-report.html).")] = None,
) -> None:
    """Compare the champion with its challengers on one HTML page, logged to MLflow as an artifact."""
    check_use_case(use_case)
    from training.report import build_report

    out = out or DEFAULT_DATA / f"{use_case}-report.html"
    try:
        with console.status("comparing the champion with its challengers"):
            written = build_report(use_case, model_name or get_use_case(use_case).model_name, out, tracking_uri, db)
    except LookupError as exc:
        console.print(f"[red]cannot report:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"[green]wrote[/] {written} and logged it to the [bold]comparison-report[/] run of experiment "
        f"[bold]{use_case}[/]; open it in a browser or under the run's artifacts in [bold]make ui[/]"
    )
