"""Trailing windows, exact and daily: first event, boundaries, long gaps, out-of-order arrivals."""

from __future__ import annotations

import json
from typing import Any

from features.windows import DAY_MS, HOUR_MS, Windows


def make() -> tuple[Windows, dict[str, Any]]:
    windows = Windows((HOUR_MS, DAY_MS))
    return windows, windows.empty()


def test_empty_history_has_zero_counts_and_sums() -> None:
    windows, state = make()
    assert windows.query(state, 10 * HOUR_MS) == [(0, 0.0), (0, 0.0)]


def test_window_is_open_at_its_start_and_closed_at_its_end() -> None:
    windows, state = make()
    windows.add(state, 0, 5.0)
    windows.add(state, HOUR_MS, 7.0)
    # at exactly one hour the first event falls out of the 1 h window: (t - 1h, t]
    assert windows.query(state, HOUR_MS) == [(1, 7.0), (2, 12.0)]
    assert windows.query(state, HOUR_MS - 1) == [(1, 5.0), (1, 5.0)]


def test_long_gap_empties_every_window() -> None:
    windows, state = make()
    windows.add(state, 0, 5.0)
    windows.add(state, 1000, 1.0)
    assert windows.query(state, 3 * DAY_MS) == [(0, 0.0), (0, 0.0)]


def test_out_of_order_event_lands_where_it_belongs() -> None:
    in_order, s1 = make()
    late, s2 = make()
    times = [0, 10 * 60_000, 20 * 60_000, 70 * 60_000]
    for t in times:
        in_order.add(s1, t, float(t // 60_000))
    for t in (times[0], times[1], times[3], times[2]):
        late.add(s2, t, float(t // 60_000))
    for at in (15 * 60_000, 65 * 60_000, 75 * 60_000, 2 * DAY_MS):
        assert in_order.query(s1, at) == late.query(s2, at)
    assert late.query(s2, 75 * 60_000) == [(2, 90.0), (4, 100.0)]


def test_old_entries_are_trimmed_but_windows_stay_exact() -> None:
    windows, state = make()
    for i in range(200):
        windows.add(state, i * HOUR_MS, 1.0)
    kept = len(state["t"])
    assert kept < 60
    assert windows.query(state, 199 * HOUR_MS) == [(1, 1.0), (24, 24.0)]


def test_state_is_json_shaped_so_rocksdb_state_can_hold_it() -> None:
    windows, state = make()
    windows.add(state, 5, 2.5)
    assert json.loads(json.dumps(state)) == state
