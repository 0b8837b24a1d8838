"""Materialize: event files through the FeatureSet into DuckDB, idempotent and resumable.

A run is identified by the FeatureSet version and a content hash of its inputs. A completed
run is not repeated; an interrupted one is replayed from the start (state must be rebuilt in
order anyway) and only the rows it had not yet written are added.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from features.featureset import FeatureSet
from training import replay, store
from training.replay import Source
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

    @property
    def events_per_second(self) -> float:
        return self.events_read / self.seconds if self.seconds else 0.0


def materialize(
    featureset: FeatureSet,
    sources: Sequence[Source],
    db_path: str | Path,
    progress: Progress | None = None,
    force: bool = False,
) -> MaterializeReport:
    """Replay `sources` through `featureset` into the DuckDB file at `db_path`."""
    started = datetime.now(UTC).replace(tzinfo=None)
    clock = datetime.now()
    replay.check(featureset, sources)
    input_fp = fingerprint([s.path for s in sources])
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
        total = sum(count_events(s.path) for s in sources)
        gc.disable()  # millions of long-lived events: cyclic GC passes would dominate the run
        history = replay.load(
            featureset, sources, None if progress is None else lambda n: progress("validate", n, total)
        )
        names = store.table_names(featureset.name)
        version = {"featureset_version": featureset.version}
        rows = store.TableWriter(con, names["features"], featureset.columns, version)
        labels = store.TableWriter(con, names["labels"], featureset.label_columns)
        dead = store.TableWriter(con, names["dead_letters"], store.DEAD_LETTER_COLUMNS, version)
        for letter in history.dead_letters:
            dead.add(store.dead_letter_row(letter))
        dead.flush()
        n = len(history.events)
        for i, outcome in enumerate(replay.run(featureset, history.events), start=1):
            for row in outcome.rows:
                rows.add(row)
            for label in outcome.labels:
                labels.add(label)
            for letter in outcome.dead_letters:
                dead.add(store.dead_letter_row(letter))
            if progress is not None and i % 10_000 == 0:
                progress("features", 10_000, n)
        if progress is not None:
            progress("features", n % 10_000, n)
        rows.flush()
        labels.flush()
        dead.flush()
        seconds = (datetime.now() - clock).total_seconds()
        con.execute(
            "INSERT OR REPLACE INTO materializations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, true)",
            [
                featureset.name,
                featureset.version,
                input_fp,
                started,
                datetime.now(UTC).replace(tzinfo=None),
                history.read,
                rows.written,
                labels.written,
                dead.written,
            ],
        )
        return MaterializeReport(
            featureset.name,
            featureset.version,
            input_fp,
            history.read,
            rows.written,
            labels.written,
            dead.written,
            False,
            seconds,
        )
    finally:
        gc.enable()
        con.close()
