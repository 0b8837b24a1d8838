"""Trailing event-time windows over one key's history, kept inside that key's state value.

`Windows` is exact to the millisecond: one sorted list of event times and a running cumulative
sum answer count and sum for every window with two binary searches each, so a 1 h, 1 d, 7 d and
30 d view costs the same as one. Events arrive in order in the common case (an append); a late
event is inserted where it belongs, so history is the same whatever order it arrived in. Entries
older than the longest window are dropped in bulk, keeping each event's cost amortized constant.

`DailyWindows` counts by UTC day instead, for keys with many events (a merchant's labels): its
state stays one bucket per day however busy the key, and the stream driver serializes a key's
state on every read and write.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


class Windows:
    """Count and sum of a value over several trailing windows ending at a query time."""

    def __init__(self, windows_ms: Sequence[int]) -> None:
        if not windows_ms or any(w <= 0 for w in windows_ms):
            raise ValueError(f"windows must be positive durations in ms, got {windows_ms!r}")
        self.windows_ms = tuple(windows_ms)
        self._horizon = max(windows_ms)

    def empty(self) -> dict[str, Any]:
        """The JSON-shaped history a key starts with; kept in the key's state by the caller."""
        return {"t": [], "c": [], "base": 0.0}

    def query(self, data: dict[str, Any], at_ms: int) -> list[tuple[int, float]]:
        """(count, sum) per window over events with time in (at_ms - window, at_ms]."""
        times: list[int] = data["t"]
        cums: list[float] = data["c"]
        hi = bisect_right(times, at_ms)
        top = cums[hi - 1] if hi else data["base"]
        out = []
        for window in self.windows_ms:
            lo = bisect_right(times, at_ms - window, 0, hi)
            out.append((hi - lo, top - (cums[lo - 1] if lo else data["base"])))
        return out

    def add(self, data: dict[str, Any], at_ms: int, value: float) -> None:
        """Record one event of `value` at `at_ms` in `data` (the caller stores it back)."""
        times: list[int] = data["t"]
        cums: list[float] = data["c"]
        if not times or at_ms >= times[-1]:
            times.append(at_ms)
            cums.append((cums[-1] if cums else data["base"]) + value)
        else:
            pos = bisect_right(times, at_ms)
            times.insert(pos, at_ms)
            cums.insert(pos, (cums[pos - 1] if pos else data["base"]) + value)
            for i in range(pos + 1, len(cums)):
                cums[i] += value
        stale = bisect_right(times, times[-1] - self._horizon)
        if stale and stale * 2 >= len(times):
            data["base"] = cums[stale - 1]
            del times[:stale]
            del cums[:stale]


class DailyWindows:
    """Count and sum of a value over trailing windows of whole UTC days.

    A window of `n` days at a query time covers the query's day and the `n - 1` days before it,
    counting what the key has seen so far: both drivers deliver a key's events in event-time
    order, so nothing later than the query has been added.
    """

    def __init__(self, windows_days: Sequence[int]) -> None:
        if not windows_days or any(w <= 0 for w in windows_days):
            raise ValueError(f"windows must be positive numbers of days, got {windows_days!r}")
        self.windows_days = tuple(windows_days)
        self._horizon = max(windows_days)

    def empty(self) -> dict[str, Any]:
        """The JSON-shaped buckets a key starts with: day numbers, counts and sums, by day."""
        return {"d": [], "n": [], "s": []}

    def query(self, data: dict[str, Any], at_ms: int) -> list[tuple[int, float]]:
        """(count, sum) per window over the buckets of days in (day - window, day]."""
        today = at_ms // DAY_MS
        days: list[int] = data["d"]
        out = []
        for window in self.windows_days:
            count, total = 0, 0.0
            for i in range(len(days) - 1, -1, -1):
                if days[i] > today:
                    continue
                if days[i] <= today - window:
                    break
                count += data["n"][i]
                total += data["s"][i]
            out.append((count, total))
        return out

    def add(self, data: dict[str, Any], at_ms: int, value: float) -> None:
        """Count one event of `value` at `at_ms` in its day's bucket (the caller stores it back)."""
        day = at_ms // DAY_MS
        days: list[int] = data["d"]
        pos = bisect_right(days, day)
        if pos and days[pos - 1] == day:
            data["n"][pos - 1] += 1
            data["s"][pos - 1] += value
        else:
            days.insert(pos, day)
            data["n"].insert(pos, 1)
            data["s"].insert(pos, value)
        stale = bisect_right(days, days[-1] - self._horizon)
        if stale:
            del days[:stale], data["n"][:stale], data["s"][:stale]
