"""Trailing event-time windows over one key's history, kept inside that key's state value.

`Windows` is exact to the millisecond: one sorted list of event times and a running cumulative
sum answer count and sum for every window with two binary searches each, so a 1 h, 1 d, 7 d and
30 d view costs the same as one. Events arrive in order in the common case (an append); a late
event is inserted where it belongs, so history is the same whatever order it arrived in. Entries
older than the longest window are dropped in bulk, keeping each event's cost amortized constant.
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
