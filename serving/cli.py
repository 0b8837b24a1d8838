"""Commands of the live side: produce, features, serve, shadow, promote.

Every command takes the use case first and reads its settings from flags, then `SAMESTREAM_*`
environment variables (`MLFLOW_TRACKING_URI` for MLflow), then defaults that work on a laptop
with the local broker (`make kafka-up`).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from features.depersonalize import DEV_SECRET
from features.featureset import FeatureSet
from features.mapping import OPTIONS as MAPPING_OPTIONS
from features.mapping import MappingError, from_command_line
from features.usecases import USE_CASES, build_featureset, get_use_case
from serving.settings import DEFAULT_BOOTSTRAP, GUARANTEES, LiveSettings

app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)
console = Console(stderr=True)

UseCase = Annotated[str, typer.Argument(help=f"Use case: {', '.join(USE_CASES)} or a registered one.")]
DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="SAMESTREAM_DATA_DIR",
        help="Folder of event files and reference data, one subfolder per use case.",
    ),
]
Secret = Annotated[
    str,
    typer.Option(
        "--secret",
        envvar="SAMESTREAM_SECRET",
        help="Key of the pseudonyms (keyed HMAC); must match the one training used.",
        show_default=False,
    ),
]
Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap", envvar="SAMESTREAM_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers, host:port[,host:port]."
    ),
]
Prefix = Annotated[
    str,
    typer.Option(
        "--topic-prefix",
        envvar="SAMESTREAM_TOPIC_PREFIX",
        help="Prefix of every topic and consumer group (keeps environments apart).",
    ),
]
GuaranteeOpt = Annotated[
    str,
    typer.Option(
        "--guarantee",
        envvar="SAMESTREAM_GUARANTEE",
        help="exactly-once (transactions: no output lost or doubled) or at-least-once (lowest latency).",
    ),
]
CommitInterval = Annotated[
    float | None,
    typer.Option(
        "--commit-interval",
        envvar="SAMESTREAM_COMMIT_INTERVAL",
        help="Seconds between commits. Default: 0.05 exactly-once, 1.0 at-least-once.",
        show_default=False,
    ),
]
StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir",
        envvar="SAMESTREAM_STATE_DIR",
        help="Local RocksDB state (rebuilt from changelog topics if lost).",
    ),
]
Instance = Annotated[
    str | None,
    typer.Option(
        "--instance-id",
        envvar="SAMESTREAM_INSTANCE_ID",
        help="Stable, unique name of this replica (names its transactional producer). Default: the host name.",
        show_default=False,
    ),
]
TrackingUri = Annotated[
    str, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking and registry store.")
]
ModelName = Annotated[
    str | None,
    typer.Option(
        "--model-name",
        envvar="SAMESTREAM_MODEL_NAME",
        help="Registered model name. Default: the use case's (fraud-detector for fraud).",
        show_default=False,
    ),
]
Idle = Annotated[
    float,
    typer.Option(
        "--stop-after-idle", help="Stop after this many seconds without input (0: run until Ctrl+C / SIGTERM)."
    ),
]
WatchInterval = Annotated[
    float,
    typer.Option(
        "--watch-interval", envvar="SAMESTREAM_WATCH_INTERVAL", help="Seconds between checks of the model alias."
    ),
]
Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Log quixstreams' own progress (rebalances, checkpoints) too.")
]

DEFAULT_DATA = Path("data")
DEFAULT_STATE = Path("state")
MAPPING_PANEL = "Input mapping (README: Your own files)"


def _mapping_option(name: str) -> Any:
    return typer.Option(name, help=MAPPING_OPTIONS[name], rich_help_panel=MAPPING_PANEL, show_default=False)


DEFAULT_LIVE_DB = Path("data/live.duckdb")
DEFAULT_TRACKING = "sqlite:///mlflow.db"


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    logging.getLogger("quixstreams").setLevel(logging.INFO if verbose else logging.WARNING)


def _featureset(use_case: str, data_dir: Path, secret: str) -> FeatureSet:
    try:
        get_use_case(use_case)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        return build_featureset(use_case, data_dir / use_case, secret)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None


def _settings(
    use_case: str,
    bootstrap: str,
    prefix: str,
    guarantee: str = "exactly-once",
    commit_interval: float | None = None,
    state_dir: Path = DEFAULT_STATE,
    instance: str | None = None,
) -> LiveSettings:
    if guarantee not in GUARANTEES:
        raise typer.BadParameter(f"--guarantee must be one of {', '.join(GUARANTEES)}, got {guarantee!r}")
    extra = {"instance": instance} if instance else {}
    try:
        return LiveSettings(
            use_case,
            bootstrap=bootstrap,
            prefix=prefix,
            guarantee=guarantee,  # type: ignore[arg-type]
            commit_interval=commit_interval,
            state_dir=state_dir,
            **extra,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _check_broker(bootstrap: str) -> None:
    """Fail in seconds with a useful message rather than retrying forever against nothing."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
    except KafkaException as exc:
        console.print(
            f"[red]no Kafka broker answers at {bootstrap}[/] ({exc.args[0].str()}): start one with "
            "`make kafka-up` or set --bootstrap / SAMESTREAM_KAFKA_BOOTSTRAP"
        )
        raise typer.Exit(2) from None


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    )


@app.command()
def produce(
    use_case: UseCase,
    events: Annotated[
        list[str] | None,
        typer.Option(
            "--events",
            help="KIND=PATH of an event file (JSONL, CSV, Parquet); repeat. Default: the use case's simulated files.",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    prefix: Prefix = "",
    speed: Annotated[
        float, typer.Option(help="Replay at the events' own pace, this many times faster (0: as fast as possible).")
    ] = 0.0,
    rate: Annotated[float, typer.Option(help="Replay at this many events per second instead (0: off).")] = 0.0,
    partitions: Annotated[
        int, typer.Option(help="Partitions of the events topic if it is created now (the tables' feed has one).")
    ] = 1,
    mapping_file: Annotated[
        Path | None,
        typer.Option(
            "--mapping",
            help="TOML file: how each kind's rows become events (renames, casts, time zone, constants, labels).",
            rich_help_panel=MAPPING_PANEL,
        ),
    ] = None,
    rename: Annotated[list[str] | None, _mapping_option("--rename")] = None,
    cast: Annotated[list[str] | None, _mapping_option("--cast")] = None,
    const: Annotated[list[str] | None, _mapping_option("--const")] = None,
    drop: Annotated[list[str] | None, _mapping_option("--drop")] = None,
    timezone: Annotated[str | None, _mapping_option("--timezone")] = None,
    label_from: Annotated[str | None, _mapping_option("--label-from")] = None,
    label_delay: Annotated[str | None, _mapping_option("--label-delay")] = None,
    label_field: Annotated[list[str] | None, _mapping_option("--label-field")] = None,
    label_kind: Annotated[str | None, _mapping_option("--label-kind")] = None,
    label_into: Annotated[str | None, _mapping_option("--label-into")] = None,
    label_at: Annotated[str | None, _mapping_option("--label-at")] = None,
    label_since: Annotated[str | None, _mapping_option("--label-since")] = None,
) -> None:
    """Replay event files onto the use case's topics, merged in replay order and keyed as upstream systems key them.

    Needs no pseudonym secret: events are keyed by their raw key (fraud, loan: customer_id).
    Files in your own column names go through the mapping materialize took (--mapping or the
    mapping options): their events are published as the same events in the schema would be.
    """
    from serving.produce import EventFile, default_files, ensure_topic, load, publish

    fs = _featureset(use_case, data_dir, DEV_SECRET)  # validation only: keys are raw, no pseudonym is made
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
    try:
        mapping = from_command_line(mapping_file, [item.partition("=")[0] for item in events or []], options)
        if mapping is not None:
            mapping.check(fs.schemas)
    except MappingError as exc:
        raise typer.BadParameter(str(exc)) from None
    if speed < 0 or rate < 0 or (speed and rate):
        raise typer.BadParameter("give --speed or --rate (not both), each >= 0")
    if partitions < 1:
        raise typer.BadParameter("--partitions must be at least 1")
    files = []
    for item in events or []:
        kind, sep, path = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--events takes KIND=PATH (e.g. payment=payments.jsonl), got {item!r}")
        files.append(EventFile(kind, Path(path)))
    if not files and mapping is not None and mapping.files:
        files = [EventFile(kind, path) for kind, path in mapping.files.items()]
    try:
        files = files or default_files(use_case, data_dir / use_case)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None
    settings = _settings(use_case, bootstrap, prefix)
    _check_broker(bootstrap)
    topic = settings.topics.events
    feed = settings.topics.named(fs.feed) if fs.tables else None
    with _bar() as bar:
        task = bar.add_task("read", total=None, rate="")
        try:
            messages = load(fs, files, advance=lambda n: bar.advance(task, n), mapping=mapping)
        except (FileNotFoundError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from None
        bar.update(task, total=len(messages), completed=len(messages))
        ensure_topic(bootstrap, topic, partitions)
        if feed is not None:
            from serving.feature_process import ensure_feed

            try:
                ensure_feed(bootstrap, feed)
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
        send = bar.add_task("publish", total=len(messages), rate="")
        started = time.perf_counter()

        def advance(n: int) -> None:
            bar.advance(send, n)
            done = bar.tasks[send].completed
            bar.update(send, rate=f"{done / max(time.perf_counter() - started, 1e-9):,.0f} ev/s")

        report = publish(bootstrap, topic, messages, feed_topic=feed, speed=speed, rate=rate, advance=advance)
    on_feed = sum(m.feed for m in messages)
    console.print(
        f"[green]published[/] {report.published - on_feed:,} events to {topic}"
        + (f" and {on_feed:,} to {feed} (the feed, ending with a watermark)" if feed else "")
        + f" in {report.seconds:.1f} s ({report.events_per_second:,.0f}/s); {report.invalid:,} invalid ones "
        "were published as read, to become dead letters with their reasons"
    )


@app.command()
def features(
    use_case: UseCase,
    data_dir: DataDir = DEFAULT_DATA,
    secret: Secret = DEV_SECRET,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    prefix: Prefix = "",
    guarantee: GuaranteeOpt = "exactly-once",
    commit_interval: CommitInterval = None,
    state_dir: StateDir = DEFAULT_STATE,
    instance: Instance = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help="Also write feature rows, labels and dead letters into this DuckDB file (`materialize`'s tables).",
        ),
    ] = None,
    publish: Annotated[
        bool, typer.Option(help="Publish to the output topics; --no-publish with --db replays into DuckDB only.")
    ] = True,
    role: Annotated[
        str,
        typer.Option(
            help="Consumer-group role: a new one replays the events topic from its earliest offset, with its own state."
        ),
    ] = "features",
    stop_after_idle: Idle = 0.0,
    verbose: Verbose = False,
) -> None:
    """Run the feature process: events in; feature rows, labels, dead letters out (and optionally into DuckDB).

    Materialize from the topic: --role materialize --no-publish --db data/samestream.duckdb --stop-after-idle 10
    """
    from serving.feature_process import FeatureProcess

    _logging(verbose)
    fs = _featureset(use_case, data_dir, secret)
    settings = _settings(use_case, bootstrap, prefix, guarantee, commit_interval, state_dir, instance)
    if not publish and db is None:
        raise typer.BadParameter("--no-publish needs --db: the rows must go somewhere")
    _check_broker(bootstrap)
    with _bar() as bar:
        task = bar.add_task("events", total=None, rate="")
        started = time.perf_counter()

        def on_message(topic: str, partition: int, offset: int) -> None:
            if topic == settings.topics.events:
                bar.advance(task)
                done = bar.tasks[task].completed
                if done % 500 == 0:
                    bar.update(task, rate=f"{done / max(time.perf_counter() - started, 1e-9):,.0f} ev/s")

        process = FeatureProcess(fs, settings, db_path=db, on_message=on_message, role=role, publish=publish)
        console.print(
            f"feature process: {settings.topics.events} -> {settings.topics.features} "
            f"({settings.guarantee}); Ctrl+C stops"
        )
        counts = process.run(idle_timeout=stop_after_idle)
    console.print(
        f"[green]done[/]: {counts.summary()}" + (f"; DuckDB {db}: {process.sink.written}" if process.sink else "")
    )


@app.command()
def serve(
    use_case: UseCase,
    data_dir: DataDir = DEFAULT_DATA,
    secret: Secret = DEV_SECRET,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    prefix: Prefix = "",
    guarantee: GuaranteeOpt = "exactly-once",
    commit_interval: CommitInterval = None,
    state_dir: StateDir = DEFAULT_STATE,
    instance: Instance = None,
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
    model_name: ModelName = None,
    alias: Annotated[str, typer.Option(help="Alias (or version number) of the model to score with.")] = "champion",
    watch_interval: WatchInterval = 5.0,
    stop_after_idle: Idle = 0.0,
    verbose: Verbose = False,
) -> None:
    """Run the live scorer: feature rows in, decisions out; models:/<name>@<alias> swapped in when the alias moves.

    fraud: approve/review/block per payment; loan: the offered rate per application; store: the
    order and markdown per store × product for tomorrow (record formats: serving/records.py).
    """
    from serving.deciders import decider_for
    from serving.registry import ModelUnavailable, ModelWatcher, Registry
    from serving.scorer import ScoringProcess

    _logging(verbose)
    fs = _featureset(use_case, data_dir, secret)
    settings = _settings(use_case, bootstrap, prefix, guarantee, commit_interval, state_dir, instance)
    _check_broker(bootstrap)
    name = model_name or get_use_case(use_case).model_name
    decider = decider_for(use_case)
    watcher = ModelWatcher(Registry(tracking_uri), name, alias, tuple(fs.columns), watch_interval, decider, fs.version)
    try:
        model = watcher.start()
    except ModelUnavailable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    process = ScoringProcess(fs, settings, watcher)
    console.print(
        f"scorer: {settings.topics.features} -> {settings.topics.decisions} with {model.label} "
        f"({name}@{alias}, {decider.describe(model)}; "
        f"{settings.guarantee}, commit every {settings.effective_commit_interval:g} s); Ctrl+C stops"
    )
    counts = process.run(idle_timeout=stop_after_idle)
    console.print(f"[green]done[/]: {counts.summary()}")


@app.command()
def shadow(
    use_case: UseCase,
    challenger: Annotated[
        list[str] | None,
        typer.Option(
            "--challenger", help="Alias or version number of a challenger; repeat. Default: every challenger-* alias."
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA,
    secret: Secret = DEV_SECRET,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    prefix: Prefix = "",
    state_dir: StateDir = DEFAULT_STATE,
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
    model_name: ModelName = None,
    live_db: Annotated[
        Path, typer.Option("--live-db", envvar="SAMESTREAM_LIVE_DB", help="DuckDB file of live scores and labels.")
    ] = DEFAULT_LIVE_DB,
    metrics_interval: Annotated[
        float, typer.Option(help="Seconds between live-metric rounds logged to MLflow.")
    ] = 30.0,
    top_k: Annotated[int, typer.Option(help="k of the precision-of-the-top-k metric.")] = 100,
    watch_interval: WatchInterval = 5.0,
    stop_after_idle: Idle = 0.0,
    verbose: Verbose = False,
) -> None:
    """Run challengers beside the champion, each in its own process and consumer group; compare them live.

    Every use case records each model's decisions, latency and agreement with the champion;
    fraud alone is also ranked against its labels (average precision, precision of the top k).
    """
    from serving.deciders import decider_for
    from serving.registry import ModelUnavailable, Registry
    from serving.shadow import ShadowConfig, ShadowHarness, resolve_challengers

    _logging(verbose)
    _featureset(use_case, data_dir, secret)
    settings = _settings(use_case, bootstrap, prefix, state_dir=state_dir)
    _check_broker(bootstrap)
    if metrics_interval <= 0 or top_k < 1:
        raise typer.BadParameter("--metrics-interval must be > 0 and --top-k >= 1")
    name = model_name or get_use_case(use_case).model_name
    try:
        refs = resolve_challengers(Registry(tracking_uri), name, tuple(challenger or ()))
    except ModelUnavailable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    config = ShadowConfig(
        settings=settings,
        data_dir=data_dir / use_case,
        secret=secret,
        tracking_uri=tracking_uri,
        model_name=name,
        challengers=refs,
        live_db=live_db,
        metrics_interval=metrics_interval,
        top_k=top_k,
        watch_interval=watch_interval,
        idle_timeout=stop_after_idle,
    )
    metrics = (
        "ranking, latency, agreement"
        if decider_for(use_case).ranked
        else "latency, errors, agreement with the champion; ranking metrics are fraud's only: a loan label "
        "answers the rate actually offered, a store label counts units sold, neither ranks a model's scores"
    )
    console.print(
        f"shadow: {', '.join(refs)} on {settings.topics.features} -> {settings.topics.shadow_scores}; "
        f"scores and labels -> {live_db}; metrics ({metrics}) -> MLflow experiment {use_case}-live every "
        f"{metrics_interval:g} s; Ctrl+C stops"
    )
    ShadowHarness(config).run()


@app.command()
def consistency(
    use_case: UseCase,
    start: Annotated[
        str | None, typer.Option("--from", help="First event time compared (ISO date/time, UTC). Default: all.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Event time the comparison stops before. Default: all.")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA,
    secret: Secret = DEV_SECRET,
    bootstrap: Bootstrap = DEFAULT_BOOTSTRAP,
    prefix: Prefix = "",
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
) -> None:
    """Compare what the live feature process published with a batch recompute of the same events, per feature.

    Reads <uc>-features (committed rows with event time in the range), recomputes them from the
    events on the topics, prints rows compared, missing, extra, and per feature the rows that
    differ and the largest difference; logs them to MLflow (experiment <uc>-consistency). Exits 1
    when anything differs.
    """
    from rich.table import Table

    from serving.consistency import check

    fs = _featureset(use_case, data_dir, secret)
    settings = _settings(use_case, bootstrap, prefix)
    window = []
    for name, value, default in (("--from", start, 0), ("--to", end, 2**62)):
        if value is None:
            window.append(default)
            continue
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(
                f"{name} takes an ISO date or time (2026-01-31, 2026-01-31T12:00), got {value!r}"
            ) from None
        window.append(int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000))
    if window[0] >= window[1]:
        raise typer.BadParameter("--from must be before --to")
    _check_broker(bootstrap)
    report = check(fs, settings, window[0], window[1])
    table = Table(title=f"{use_case}: live rows against the batch recompute (FeatureSet {fs.version})")
    for column in ("feature", "rows differing", "largest difference"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for name, diff in report.features.items():
        style = "red" if diff.mismatching else ""
        table.add_row(name, f"{diff.mismatching:,}", f"{diff.max_abs_diff:.6g}", style=style)
    console.print(table)
    console.print(
        f"rows compared {report.compared:,}, missing from the stream {report.missing:,}, extra {report.extra:,}, "
        f"published twice {report.duplicated:,}, differing {report.mismatching:,}"
    )
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"{use_case}-consistency")
    with mlflow.start_run(run_name=f"consistency {start or 'start'} - {end or 'now'}"):
        mlflow.set_tags({"use_case": use_case, "featureset_version": fs.version, "topic_prefix": prefix})
        mlflow.log_metrics(report.metrics())
    if not report.consistent:
        console.print("[red]the live features differ from the batch features[/]")
        raise typer.Exit(1)
    console.print("[green]consistent[/]: every live row equals its batch recompute")


@app.command()
def promote(
    use_case: UseCase,
    version: Annotated[str | None, typer.Option("--version", help="Version number to promote.")] = None,
    from_alias: Annotated[
        str | None,
        typer.Option("--from-alias", help="Promote the version this alias points to (e.g. challenger-xgboost)."),
    ] = None,
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "champion",
    tracking_uri: TrackingUri = DEFAULT_TRACKING,
    model_name: ModelName = None,
    data_dir: DataDir = DEFAULT_DATA,
    secret: Secret = DEV_SECRET,
) -> None:
    """Move the champion (or another alias) to a model version; running scorers swap to it without a restart.

    Refuses a version trained on other features than the feature process makes (its
    `featureset_version` tag against the FeatureSet built from --data-dir).
    """
    from serving.registry import ModelUnavailable, Registry

    fs = _featureset(use_case, data_dir, secret)
    if (version is None) == (from_alias is None):
        raise typer.BadParameter("give exactly one of --version or --from-alias")
    name = model_name or get_use_case(use_case).model_name
    registry = Registry(tracking_uri)
    try:
        target = version if version is not None else str(registry.resolve(name, from_alias).version)  # type: ignore[arg-type]
        previous = registry.promote(name, target, alias, featureset_version=fs.version)
    except ModelUnavailable as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(f"[green]{name}@{alias}[/]: v{previous or '-'} -> v{target}")


if __name__ == "__main__":
    app()
