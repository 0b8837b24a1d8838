"""Daily tables: the time rule, late and repeated feed records, and views that wait for final days."""

from __future__ import annotations

import json
import threading

import pytest

from features.state import DictState
from features.tables import DAY_MS, DailyTable, Fold, TableNotReady, TableView

HOUR = 3_600_000
TABLE = DailyTable(
    name="risk",
    kinds=("label",),
    columns=("labels", "frauds"),
    entity=lambda r: r["m"],
    values=lambda r: (1.0, float(r["fraud"])),
    event_id=lambda r: r["id"],
    grace_ms=HOUR,
    horizon_days=2,
)


def label(ident: str, t: int, m: str = "M1", fraud: bool = True) -> dict:
    return {"kind": "label", "t": t, "id": ident, "m": m, "fraud": fraud}


def fold_all(records: list[dict]) -> tuple[list[tuple[Fold, int]], TableView, DictState]:
    state, view, out = DictState({}), TableView(TABLE), []
    for record in records:
        fold, day = TABLE.fold(record, state)
        if fold in (Fold.COUNTED, Fold.LATE):
            view.add(TABLE.entity(record), day, TABLE.values(record))
        view.advance(record["t"])
        out.append((fold, day))
    return out, view, state


def test_a_day_is_final_an_hour_after_it_ends_and_is_read_from_the_next_day_plus_an_hour() -> None:
    assert TABLE.closed_through(2 * DAY_MS + HOUR - 1) == 0
    assert TABLE.closed_through(2 * DAY_MS + HOUR) == 1
    assert TABLE.as_of_day(2 * DAY_MS + HOUR - 1) == 0
    assert TABLE.as_of_day(2 * DAY_MS + HOUR) == 1


def test_a_label_for_a_final_day_counts_in_the_first_open_day() -> None:
    folds, view, _ = fold_all([label("a", DAY_MS + 5), label("b", 3 * DAY_MS + 2 * HOUR), label("c", DAY_MS + 9)])
    assert folds == [(Fold.COUNTED, 1), (Fold.COUNTED, 3), (Fold.LATE, 3)]
    assert view.closed_through == 2
    assert view.windows("M1", 2, (1, 30)) == [(0.0, 0.0), (1.0, 1.0)]
    with pytest.raises(TableNotReady):
        view.windows("M1", 3, (1,))
    view.advance(4 * DAY_MS + HOUR)
    assert view.windows("M1", 3, (1, 2, 30)) == [(2.0, 2.0), (2.0, 2.0), (3.0, 3.0)]


def test_a_repeat_is_dropped_within_the_horizon_and_the_state_stays_bounded() -> None:
    records = [label("a", 0), label("a", 0), label("b", HOUR, fraud=False), label("a", 2 * DAY_MS)]
    records += [label(f"x{d}", d * DAY_MS) for d in range(3, 30)]
    folds, view, state = fold_all(records)
    assert [f for f, _ in folds[:4]] == [Fold.COUNTED, Fold.DUPLICATE, Fold.COUNTED, Fold.DUPLICATE]
    assert view.windows("M1", 1, (2,)) == [(2.0, 1.0)]
    assert len(state.get("risk:days")) <= TABLE.horizon_days + 2
    remembered = [i for k, ids in state._data.items() if k.startswith("risk:seen:") for i in ids]
    assert "a" not in remembered and len(remembered) <= TABLE.horizon_days + 2
    assert json.loads(json.dumps(state._data)) == state._data


def test_a_watermark_moves_the_clock_only() -> None:
    state, view = DictState({}), TableView(TABLE)
    assert TABLE.fold({"kind": "watermark", "t": 5 * DAY_MS + HOUR}, state) == (Fold.CLOCK, 5)
    view.advance(5 * DAY_MS + HOUR)
    assert view.closed_through == 4 and view.windows("M9", 4, (7,)) == [(0.0, 0.0)]


def test_a_view_refuses_an_open_day_and_wakes_a_waiting_reader_when_it_closes() -> None:
    view = TableView(TABLE)
    with pytest.raises(TableNotReady):
        view.windows("M1", 0, (1,))
    assert not view.wait_closed(3, 0.01)
    woken = threading.Timer(0.05, view.advance, args=(4 * DAY_MS + HOUR,))
    woken.start()
    assert view.wait_closed(3, 5.0)
    woken.join()


def test_tables_sharing_a_feed_state_keep_their_own_keys() -> None:
    other = DailyTable("other", ("label",), ("n",), lambda r: r["m"], lambda r: (1.0,), lambda r: r["id"], HOUR)
    state = DictState({})
    record = label("a", 0)
    assert TABLE.fold(record, state)[0] is Fold.COUNTED
    assert other.fold(record, state)[0] is Fold.COUNTED
    assert {k.split(":")[0] for k in state._data} == {"risk", "other"}
