"""Materialize: event files through the FeatureSet into DuckDB, idempotent and resumable.

A run is identified by the FeatureSet version and a content hash of its inputs. A completed
run is not repeated; an interrupted one is replayed from the start (state must be rebuilt in
order anyway) and only the rows it had not yet written are added.

With `workers` > 1 the events are split into that many shards by the hash of their Kafka key
(`training.replay.Shard`): each worker process replays one shard, with each key's events whole
and in order, into a DuckDB file of its own, and the run then copies those into the target.
The rows are the ones a single worker writes, row for row; the work spreads over the cores.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import duckdb

from features.featureset import DeadLetter, FeatureSet, LocalRunner
from features.mapping import Mapping
from training import replay, store
from training.replay import Shard, Source
from training.sources import count_events, fingerprint

Progress = Callable[[str, int, int], None]
"""progress(step, advance, total): lets a CLI draw a bar without this module knowing rich."""


@dataclass(frozen=True)
class MaterializeReport:
    use_case: str
    featureset_version: str
    input_fingerprint: str
    events_read: int
    rows_written: int
    labels_written: int
    dead_letters: int
    skipped: bool
    seconds: float
    duplicates: int = 0
    workers: int = 1
    rejected: dict[str, Rejection] = field(default_factory=dict)
    """Dead letters of this run by the class of their reason (`schema violation`, ...)."""

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Rejection:
    """How many events were rejected for one class of reason, and the first of them."""

    count: int
    example: str
    where: str


@dataclass(frozen=True)
class _ShardResult:
    read: int
    events: int
    duplicates: int
    rejected: dict[str, Rejection]


def _tally(letters: Iterable[DeadLetter], into: dict[str, Rejection]) -> None:
    for letter in letters:
        kind = letter.reason.split(":", 1)[0]
        seen = into.get(kind)
        into[kind] = (
            Rejection(seen.count + 1, seen.example, seen.where)
            if seen
            else Rejection(1, letter.reason, f"{letter.source} {letter.position}")
        )


def _merge(results: Iterable[_ShardResult]) -> dict[str, Rejection]:
    merged: dict[str, Rejection] = {}
    for result in results:
        for kind, r in result.rejected.items():
            seen = merged.get(kind)
            merged[kind] = Rejection(seen.count + r.count, seen.example, seen.where) if seen else r
    return merged


def materialize(
    featureset: FeatureSet,
    sources: Sequence[Source],
    db_path: str | Path,
    progress: Progress | None = None,
    force: bool = False,
    workers: int = 1,
    references: Sequence[Path] = (),
    mapping: Mapping | None = None,
) -> MaterializeReport:
    """Replay `sources` through `featureset` into the DuckDB file at `db_path`, on `workers` processes.

    `references` (the merchant reference, a product master) and the `mapping` the files are
    read through are part of the input fingerprint: either changed makes other rows. `force`
    replays inputs already materialized and replaces the dead letters earlier runs of this
    FeatureSet version left.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    started = datetime.now(UTC).replace(tzinfo=None)
    clock = time.perf_counter()
    replay.check(featureset, sources)
    input_fp = fingerprint([*(s.path for s in sources), *references])
    if mapping is not None:
        input_fp = hashlib.sha256(f"{input_fp} {mapping.digest}".encode()).hexdigest()[:16]
    con = store.connect(db_path)
    try:
        store.ensure_tables(con, featureset)
        done = con.execute(
            "SELECT events_read, rows_written, labels_written, dead_letters FROM materializations "
            "WHERE use_case = ? AND featureset_version = ? AND input_fingerprint = ? AND completed",
            [featureset.name, featureset.version, input_fp],
        ).fetchone()
        if done and not force:
            return MaterializeReport(featureset.name, featureset.version, input_fp, done[0], 0, 0, done[3], True, 0.0)
        total = sum(count_events(s.path) * (1 + _derives_labels(mapping, s.kind)) for s in sources)
        names = store.table_names(featureset.name)
        if force:
            con.execute(f"DELETE FROM {names['dead_letters']} WHERE featureset_version = ?", [featureset.version])
        before = {kind: _count(con, table) for kind, table in names.items()}
        reporter = _Reporter(progress, total)
        runner = LocalRunner(featureset)
        if workers == 1:
            fed = _replay_into(con, featureset, sources, "feed", Shard(), runner, reporter, mapping)
            result = _replay_into(con, featureset, sources, "events", Shard(), runner, reporter, mapping)
        else:
            fed, result = _parallel(con, featureset, sources, workers, runner, reporter, mapping)
        written = {kind: _count(con, table) - before[kind] for kind, table in names.items()}
        seconds = time.perf_counter() - clock
        con.execute(
            "INSERT OR REPLACE INTO materializations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, true)",
            [
                featureset.name,
                featureset.version,
                input_fp,
                started,
                datetime.now(UTC).replace(tzinfo=None),
                fed.read,
                written["features"],
                written["labels"],
                written["dead_letters"],
            ],
        )
        return MaterializeReport(
            featureset.name,
            featureset.version,
            input_fp,
            fed.read,
            written["features"],
            written["labels"],
            written["dead_letters"],
            False,
            seconds,
            fed.duplicates + result.duplicates,
            workers,
            _merge([fed, result]),
        )
    finally:
        con.close()


class _Reporter:
    """Progress of one replay: to the caller's callback, or to counters a parent process reads."""

    def __init__(
        self, progress: Progress | None, total: int, counters: dict[str, Synchronized[int]] | None = None
    ) -> None:
        self.progress = progress
        self.total = total
        self.counters = counters

    def __call__(self, step: str, n: int, total: int) -> None:
        if self.counters is not None:
            with self.counters[step].get_lock():
                self.counters[step].value += n
        elif self.progress is not None:
            self.progress(step, n, total)


def _replay_into(
    con: duckdb.DuckDBPyConnection,
    featureset: FeatureSet,
    sources: Sequence[Source],
    part: replay.Part,
    shard: Shard,
    runner: LocalRunner,
    report: _Reporter,
    mapping: Mapping | None = None,
    before_run: Callable[[], None] | None = None,
) -> _ShardResult:
    """Replay one part of the sources (the feed, or one shard of the events) through `runner`
    into the tables of `con`; `before_run` is called once the part is read and validated."""
    gc.disable()  # millions of long-lived events: cyclic GC passes would dominate the run
    try:
        count = (lambda n: report("validate", n, report.total)) if part == "events" and shard.index == 0 else None
        history = replay.load(featureset, sources, count, shard, part, mapping)
        if before_run is not None:
            before_run()
        names = store.table_names(featureset.name)
        version = {"featureset_version": featureset.version}
        rows = store.TableWriter(con, names["features"], featureset.columns, version)
        labels = store.TableWriter(con, names["labels"], featureset.label_columns)
        dead = store.TableWriter(con, names["dead_letters"], store.DEAD_LETTER_COLUMNS, version)
        rejected: dict[str, Rejection] = {}
        _tally(history.dead_letters, rejected)
        for letter in history.dead_letters:
            dead.add(store.dead_letter_row(letter))
        dead.flush()
        n = len(history.events) + len(history.feed)
        duplicates = 0
        for i, outcome in enumerate(replay.run(featureset, history, runner), start=1):
            for row in outcome.rows:
                rows.add(row)
            for label in outcome.labels:
                labels.add(label)
            _tally(outcome.dead_letters, rejected)
            for letter in outcome.dead_letters:
                dead.add(store.dead_letter_row(letter))
            duplicates += outcome.duplicate
            if i % 10_000 == 0:
                report("features", 10_000, report.total)
        report("features", n % 10_000, report.total)
        rows.flush()
        labels.flush()
        dead.flush()
        return _ShardResult(read=history.read, events=n, duplicates=duplicates, rejected=rejected)
    finally:
        gc.enable()


def _parallel(
    con: duckdb.DuckDBPyConnection,
    featureset: FeatureSet,
    sources: Sequence[Source],
    workers: int,
    runner: LocalRunner,
    report: _Reporter,
    mapping: Mapping | None = None,
) -> tuple[_ShardResult, _ShardResult]:
    """Replay `workers` shards of the events in forked processes, each into its own DuckDB file,
    then copy them in; the results of the feed and of the events.

    The workers read and validate their shards while this process folds the feed; each then
    takes a copy of the folded tables (`LocalRunner.tables_snapshot`) before its first event, so
    the one part that cannot be split overlaps the work that can."""
    context = multiprocessing.get_context("fork")
    counters = {step: context.Value("q", 0) for step in ("validate", "features")}
    scratch = Path(tempfile.mkdtemp(prefix="samestream-shards-"))
    results = context.Queue()
    tables = [context.Queue() for _ in range(workers)]
    processes = [
        context.Process(
            target=_shard_worker,
            args=(
                featureset,
                sources,
                Shard(i, workers),
                runner,
                scratch / f"shard-{i}.duckdb",
                counters,
                report.total,
                results,
                tables[i],
                mapping,
            ),
            name=f"materialize-shard-{i}",
        )
        for i in range(workers)
    ]
    try:
        for process in processes:
            process.start()
        fed = _replay_into(con, featureset, sources, "feed", Shard(), runner, report, mapping)
        snapshot = runner.tables_snapshot()
        for queue in tables:
            queue.put(snapshot)
        outcomes: dict[int, _ShardResult | str] = {}
        shown = {step: 0 for step in counters}
        while len(outcomes) < workers:
            while not results.empty():
                index, outcome = results.get()
                outcomes[index] = outcome
            for step, counter in counters.items():
                value = counter.value
                if value > shown[step]:
                    report(step, value - shown[step], report.total)
                    shown[step] = value
            if len(outcomes) < workers and all(not p.is_alive() for p in processes) and results.empty():
                break
            time.sleep(0.1)
        for process in processes:
            process.join()
        failed = [f"shard {i}: {outcome}" for i, outcome in sorted(outcomes.items()) if isinstance(outcome, str)]
        lost = [f"shard {i}: exited with code {p.exitcode}" for i, p in enumerate(processes) if i not in outcomes]
        if failed or lost:
            raise RuntimeError("materialize workers failed: " + "; ".join(failed + lost))
        for i in range(workers):
            _copy_shard(con, featureset, scratch / f"shard-{i}.duckdb")
        done = [o for o in outcomes.values() if isinstance(o, _ShardResult)]
        return fed, _ShardResult(
            read=max(o.read for o in done),
            events=sum(o.events for o in done),
            duplicates=sum(o.duplicates for o in done),
            rejected=_merge(done),
        )
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
        shutil.rmtree(scratch, ignore_errors=True)


def _shard_worker(
    featureset: FeatureSet,
    sources: Sequence[Source],
    shard: Shard,
    runner: LocalRunner,
    path: Path,
    counters: dict[str, Synchronized[int]],
    total: int,
    results: multiprocessing.Queue,  # type: ignore[type-arg]
    tables: multiprocessing.Queue,  # type: ignore[type-arg]
    mapping: Mapping | None = None,
) -> None:
    """One worker: its shard into its own DuckDB file, from the tables the parent folded (taken
    from `tables` once the shard is read); the result (or the error) onto `results`."""
    try:
        con = store.connect(path)
        try:
            store.ensure_tables(con, featureset)
            reporter = _Reporter(None, total, counters)
            result: _ShardResult | str = _replay_into(
                con,
                featureset,
                sources,
                "events",
                shard,
                runner,
                reporter,
                mapping,
                before_run=lambda: runner.restore_tables(tables.get()),
            )
        finally:
            con.close()
    except Exception as exc:  # reported by the parent, which fails the run with it
        result = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
    results.put((shard.index, result))


def _copy_shard(con: duckdb.DuckDBPyConnection, featureset: FeatureSet, path: Path) -> None:
    """Insert a shard's rows, labels and dead letters into the target tables (nothing twice)."""
    con.execute(f"ATTACH '{path}' AS shard (READ_ONLY)")
    try:
        for table in store.table_names(featureset.name).values():
            con.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM shard.{table}")
    finally:
        con.execute("DETACH shard")


def _derives_labels(mapping: Mapping | None, kind: str) -> bool:
    kind_mapping = mapping.kinds.get(kind) if mapping is not None else None
    return kind_mapping is not None and kind_mapping.label is not None


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    counted = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(counted[0]) if counted else 0
