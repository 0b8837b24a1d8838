"""Point-in-time training sets and time-ordered splits.

A model may only learn from labels that were known when it would have been trained: rows are
joined to the latest label known at a cut-off, and the test window starts one feedback delay
after the training window ends, so no label from the future leaks into training. Test rows are
judged by the labels known by the end of the data, as a backtest would judge them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import duckdb
import pandas as pd

from features.featureset import FeatureSet
from training.store import table_names


@dataclass(frozen=True)
class Windows:
    """Training, validation and test windows, and the cut-off for training labels.

    Validation is the last part of the training window (model selection and thresholds);
    `cutoff` is when the training labels are read: the start of the test window.
    """

    train_start: datetime
    validation_start: datetime
    train_end: datetime
    test_start: datetime
    test_end: datetime

    @property
    def cutoff(self) -> datetime:
        return self.test_start

    def as_params(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in asdict(self).items()} | {"label_cutoff": self.cutoff.isoformat()}

    def check(self) -> None:
        ordered = [self.train_start, self.validation_start, self.train_end, self.test_start, self.test_end]
        if ordered != sorted(ordered) or len(set(ordered)) != len(ordered):
            raise ValueError(
                "windows must satisfy train_start < validation_start < train_end <= test_start < test_end, got "
                + ", ".join(f"{k}={v:%Y-%m-%d}" for k, v in asdict(self).items())
            )


def default_windows(
    first: datetime,
    last: datetime,
    warmup_days: int = 7,
    validation_days: int = 10,
    delay_days: int = 14,
    test_days: int = 14,
) -> Windows:
    """Windows laid over the data's time span: warm-up (history fills), train, delay, test.

    The delay must cover the time a label takes to become final (a genuine payment is known to
    be genuine only when its dispute window closes): a shorter gap would leave the end of the
    training window with the quick labels only, the frauds, and bias the model toward them.
    """
    test_end = last + timedelta(microseconds=1)
    test_start = test_end - timedelta(days=test_days)
    train_end = test_start - timedelta(days=delay_days)
    windows = Windows(
        train_start=first + timedelta(days=warmup_days),
        validation_start=train_end - timedelta(days=validation_days),
        train_end=train_end,
        test_start=test_start,
        test_end=test_end,
    )
    windows.check()
    return windows


def time_span(con: duckdb.DuckDBPyConnection, fs: FeatureSet) -> tuple[datetime, datetime]:
    """First and last event time of the current version's rows."""
    first, last = con.execute(
        f"SELECT min(event_time), max(event_time) FROM {table_names(fs.name)['features']} WHERE featureset_version = ?",
        [fs.version],
    ).fetchone()  # type: ignore[misc]
    if first is None:
        raise LookupError(
            f"no {fs.name} feature rows of version {fs.version} in the database: run `samestream materialize {fs.name}`"
        )
    return first, last


def labelled_rows(
    con: duckdb.DuckDBPyConnection, fs: FeatureSet, start: datetime, end: datetime, known_by: datetime | None
) -> pd.DataFrame:
    """Feature rows with event time in [start, end), each with its label as known at `known_by`.

    Rows whose label was not yet known then are left out: their outcome was unknown. With
    `known_by=None`, the latest label of every row is used (the backtest's ground truth).
    """
    names = table_names(fs.name)
    label_col = next(c for c, t in fs.label_columns.items() if t == "bool")
    time_col = next(c for c, t in fs.label_columns.items() if t == "ts_ms")
    known_filter = "" if known_by is None else f'WHERE "{time_col}" <= $known_by'
    columns = ", ".join(f'f."{c}"' for c in (*fs.columns, "featureset_version"))  # not another version's
    query = f"""
        WITH known AS (
            SELECT "{fs.row_id}" AS id, arg_max("{label_col}", "{time_col}") AS label
            FROM {names["labels"]} {known_filter}
            GROUP BY 1
        )
        SELECT {columns}, k.label AS label
        FROM {names["features"]} f JOIN known k ON f."{fs.row_id}" = k.id
        WHERE f.featureset_version = $version AND f.event_time >= $start AND f.event_time < $end
        ORDER BY f.event_time, f."{fs.row_id}"
    """
    params = {"version": fs.version, "start": start, "end": end}
    if known_by is not None:
        params["known_by"] = known_by
    frame = con.execute(query, params).df()
    frame["label"] = frame["label"].astype("int8")
    return frame


@dataclass
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    windows: Windows


def splits(con: duckdb.DuckDBPyConnection, fs: FeatureSet, windows: Windows) -> Splits:
    """Train and validation with labels known at the cut-off; test with the labels known last."""
    windows.check()
    fit = labelled_rows(con, fs, windows.train_start, windows.train_end, windows.cutoff)
    is_validation = fit["event_time"] >= pd.Timestamp(windows.validation_start)
    test = labelled_rows(con, fs, windows.test_start, windows.test_end, None)
    for name, frame in (("training", fit[~is_validation]), ("validation", fit[is_validation]), ("test", test)):
        if frame.empty or frame["label"].nunique() < 2:
            raise ValueError(
                f"the {name} window holds {len(frame)} labelled rows with {frame['label'].nunique()} class(es); "
                "widen the windows or materialize more history"
            )
    return Splits(
        train=fit[~is_validation].reset_index(drop=True),
        validation=fit[is_validation].reset_index(drop=True),
        test=test,
        windows=windows,
    )
