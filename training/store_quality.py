"""Data-quality summary of the store feeds, read back from DuckDB after a load.

Every rejected record is a dead letter with its reason; the reason's lead (`late`, `wrong unit`,
`negative stock`, `unknown reference`, `schema violation`) is its class. Records the feature
stage drops, repeated lines and stock events of a day already closed, are counted on the rows.
Together with what each materialization read and wrote, that is the whole account of a load:
every record read is a row's input, a dead letter or a counted drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from rich.table import Table

from features.featureset import FeatureSet
from training.store import connect, table_names


@dataclass(frozen=True)
class Load:
    """One completed materialization of the current FeatureSet version."""

    finished_at: datetime
    events_read: int
    rows_written: int
    labels_written: int
    dead_letters: int


@dataclass(frozen=True)
class QualitySummary:
    loads: list[Load]
    rows: int
    labels: int
    dead_letters: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(source file, event kind, reason class) -> records."""
    duplicates: int = 0
    late_in_stage: int = 0

    @property
    def dead_total(self) -> int:
        return sum(self.dead_letters.values())

    def by_reason(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (_, _, reason), n in self.dead_letters.items():
            totals[reason] = totals.get(reason, 0) + n
        return dict(sorted(totals.items()))

    def metrics(self) -> dict[str, float]:
        """Counts for MLflow, one name per reason class (`dq_dead_wrong_unit`, ...)."""
        return {
            "dq_rows": float(self.rows),
            "dq_labels": float(self.labels),
            "dq_dead_letters": float(self.dead_total),
            "dq_duplicates": float(self.duplicates),
            "dq_late_in_stage": float(self.late_in_stage),
            **{f"dq_dead_{reason.replace(' ', '_')}": float(n) for reason, n in self.by_reason().items()},
        }

    def table(self) -> Table:
        """Dead letters per source and reason, then the stage's drops and the load's totals."""
        reasons = list(self.by_reason())
        table = Table(title="data quality: records rejected (dead letters) and dropped, by source and reason")
        table.add_column("source")
        table.add_column("kind")
        for reason in reasons:
            table.add_column(reason, justify="right")
        table.add_column("total", justify="right")
        sources = sorted({(s, k) for s, k, _ in self.dead_letters})
        for source, kind in sources:
            counts = [self.dead_letters.get((source, kind, r), 0) for r in reasons]
            table.add_row(source, kind, *(f"{n:,}" for n in counts), f"{sum(counts):,}")
        table.add_row("all", "", *(f"{n:,}" for n in self.by_reason().values()), f"{self.dead_total:,}", style="bold")
        last = self.loads[-1] if self.loads else None
        table.caption = (
            f"dropped by the feature stage: {self.duplicates:,} repeated lines, {self.late_in_stage:,} stock events "
            f"of closed days · {self.rows:,} feature rows, {self.labels:,} labels"
            + (
                f" · last load {last.finished_at:%Y-%m-%d %H:%M}: {last.events_read:,} records read, "
                f"{last.dead_letters:,} dead letters"
                if last
                else ""
            )
        )
        return table


def quality_summary(db: str | Path, fs: FeatureSet) -> QualitySummary:
    """The data-quality account of the current FeatureSet version in the DuckDB file at `db`."""
    names = table_names(fs.name)
    con = connect(db, read_only=True)
    try:
        loads = [
            Load(*row)
            for row in con.execute(
                "SELECT finished_at, events_read, rows_written, labels_written, dead_letters FROM materializations "
                "WHERE use_case = ? AND featureset_version = ? AND completed ORDER BY finished_at",
                [fs.name, fs.version],
            ).fetchall()
        ]
        dead = {
            (source, kind, reason): n
            for source, kind, reason, n in con.execute(
                f"SELECT source, kind, split_part(reason, ':', 1), count(*) FROM {names['dead_letters']} "
                "WHERE featureset_version = ? GROUP BY ALL ORDER BY ALL",
                [fs.version],
            ).fetchall()
        }
        rows, duplicates, late = con.execute(
            f"SELECT count(*), coalesce(sum(dq_duplicates), 0), coalesce(sum(dq_late), 0) FROM {names['features']} "
            "WHERE featureset_version = ?",
            [fs.version],
        ).fetchone()  # type: ignore[misc]
        labels = con.execute(f"SELECT count(*) FROM {names['labels']}").fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    return QualitySummary(loads, rows, labels, dead, int(duplicates), int(late))
