"""Tables of another entity's features, read *as of* an event's time.

A keyed stage holds one entity's history, fed through one partition in that partition's order,
so both drivers give its state the same events in the same order. Features of another entity (a
merchant's fraud rate from delayed labels, while payments are keyed by customer) would need the
records of many partitions in one order, which no scaled-out stream gives. They come from a
`DailyTable` instead: sums per entity and day, built from a *feed* of events (the labels) that is
one ordered log, and read by an event only for days that are final.

The time rule, the same in both drivers:

- The feed's **clock** is the latest event time it has carried (a label's `known_at`, or a
  watermark's `ts`: the feed's promise that nothing earlier follows).
- Day D is **final** once the clock has passed the end of D by `grace_ms`:
  `D <= closed_through(clock) = (clock - grace) // DAY - 1`.
- An event at time t reads the days up to `as_of_day(t) = (t - grace) // DAY - 1`: what was
  known before the start of the day of `t - grace` (with a one-hour grace, a payment at 00:30
  reads up to the day before yesterday, at 01:30 up to yesterday). Such a day is final once the
  feed's clock has reached about t, so a live event rarely waits; a stream driver whose feed is
  behind waits for it and counts the wait, a batch driver has read the whole feed first.
- A **late** record, one whose day is already final when it arrives, is counted in the first
  day still open, so final days never change and nothing is lost.
- A **repeat**, a record whose id the table has counted within `horizon_days` of final days,
  is dropped and counted as a duplicate.

Folding the feed needs only the feed, in its order: `fold` keeps its bookkeeping (the clock,
the ids seen) in a `State`, so the stream driver keeps it in quixstreams' changelogged state and
a replay or the batch driver keeps it in a dict; both reach the same decisions for every record.
`TableView` holds the sums a fold has produced, and answers window queries for final days only.
"""

from __future__ import annotations

import threading
import zlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import msgspec

from features.state import State

DAY_MS = 86_400_000
WATERMARK = "watermark"
"""Kind of a feed event that only moves the clock: `{"type": "watermark", "ts": ...}`."""
_SEEN_CHUNKS = 256
"""The ids seen within the horizon are spread over this many state values (by a hash of the id),
so a repeat check reads one small value and no changelog message grows with a busy feed."""

Record = dict[str, Any]


class Watermark(msgspec.Struct, tag=WATERMARK, tag_field="type", forbid_unknown_fields=False):
    """The feed's promise that no record earlier than `ts` follows: it closes days without a record.

    A live feed sends one when it has been quiet (a table day is final only once the feed has
    moved past it); `samestream produce` ends each replay of a feed with one at the latest event
    time it replayed, and the batch driver closes its tables the same way at the end of input.
    """

    ts: Annotated[datetime, msgspec.Meta(tz=True)]


class Fold(StrEnum):
    """What a feed record did to its table."""

    COUNTED = "counted"
    LATE = "late"
    """Counted, in the first open day: its own day was final when it arrived."""
    DUPLICATE = "duplicate"
    CLOCK = "clock"
    """A watermark: only the clock moved."""
    SKIPPED = "skipped"
    """Not for this table (its `where` said no): only the clock moved."""


class TableNotReady(Exception):
    """A read needs a day the table has not closed yet: the stream driver waits and retries."""

    def __init__(self, table: str, day: int, closed_through: int) -> None:
        super().__init__(f"table {table} is final through day {closed_through}, the read needs day {day}")
        self.table = table
        self.day = day


@dataclass(frozen=True, slots=True)
class DailyTable:
    """A table of daily sums per entity, built from feed records of the given kinds.

    Parameters
    ----------
    name:
        Names the table in views and metrics (e.g. ``merchant-risk``).
    kinds:
        Event kinds of the feed that add to the table (e.g. ``("label",)``).
    columns:
        Names of the values a record adds (e.g. ``("labels", "frauds")``).
    entity:
        The entity a record adds to (a merchant id; never a raw personal identifier).
    values:
        What a record adds to its entity's day, e.g. ``(1.0, is_fraud)``.
    event_id:
        Identifies a record, to recognize repeats.
    grace_ms:
        How long after a day ends its records may still arrive; also the read delay.
    horizon_days:
        Final days whose record ids are still remembered to recognize a repeat.
    where:
        Which records of those kinds add to the table (None: all), e.g. only frauds: a table
        of rare events then holds only those, and remembers only their ids.
    """

    name: str
    kinds: tuple[str, ...]
    columns: tuple[str, ...]
    entity: Callable[[Record], str]
    values: Callable[[Record], tuple[float, ...]]
    event_id: Callable[[Record], str]
    grace_ms: int
    horizon_days: int = 7
    where: Callable[[Record], bool] | None = None

    def closed_through(self, clock_ms: int) -> int:
        """The last final day at this clock."""
        return (clock_ms - self.grace_ms) // DAY_MS - 1

    def as_of_day(self, t_ms: int) -> int:
        """The last day an event at `t_ms` reads."""
        return (t_ms - self.grace_ms) // DAY_MS - 1

    def fold(self, record: Record, state: State) -> tuple[Fold, int]:
        """Account for one feed record, in feed order: what it did, and the day it counts in.

        `record` is a depersonalized feed record with its event time in `t` and its kind in
        `kind`; `state` holds the fold's bookkeeping (one state for the whole feed, which every
        table of the feed may share: its keys start with the table's name).
        """
        clock: int | None = state.get(self._key("clock"))
        t: int = record["t"]
        if record["kind"] == WATERMARK:
            self._advance(state, clock, t)
            return Fold.CLOCK, t // DAY_MS
        if self.where is not None and not self.where(record):
            self._advance(state, clock, t)
            return Fold.SKIPPED, t // DAY_MS
        closed = None if clock is None else self.closed_through(clock)
        day = t // DAY_MS
        fold = Fold.COUNTED
        if closed is not None and day <= closed:
            day, fold = closed + 1, Fold.LATE
        ident = self.event_id(record)
        key = self._key(f"seen:{zlib.crc32(ident.encode()) % _SEEN_CHUNKS}")
        seen: dict[str, int] = state.get(key) or {}
        if ident in seen:
            return Fold.DUPLICATE, day
        seen[ident] = day
        state.set(key, seen)
        days: list[int] = state.get(self._key("days")) or []
        if day not in days:
            days.insert(bisect_left(days, day), day)
            state.set(self._key("days"), days)
        self._advance(state, clock, t)
        return fold, day

    def _advance(self, state: State, clock: int | None, t: int) -> None:
        """Move the clock to `t` if later, and forget the ids of days beyond the horizon."""
        if clock is not None and t <= clock:
            return
        state.set(self._key("clock"), t)
        days: list[int] = state.get(self._key("days")) or []
        oldest = self.closed_through(t) - self.horizon_days + 1
        keep = bisect_left(days, oldest)
        if keep:
            for chunk in range(_SEEN_CHUNKS):
                key = self._key(f"seen:{chunk}")
                seen = state.get(key)
                if seen:
                    state.set(key, {ident: day for ident, day in seen.items() if day >= oldest})
            state.set(self._key("days"), days[keep:])

    def _key(self, name: str) -> str:
        """State keys are the table's own: several tables may share one feed's state."""
        return f"{self.name}:{name}"


class TableView:
    """The daily sums of one table, answering window queries over final days.

    Filled by the driver that folds the feed (`add`, `advance`); read by the FeatureSet through
    `windows`. The stream driver fills it from a thread reading the feed and reads it from the
    processing loop: `wait_closed` blocks a reader until the day it needs is final.
    """

    def __init__(self, table: DailyTable) -> None:
        self.table = table
        self.closed_through: int | None = None
        self._days: dict[str, list[int]] = {}
        self._sums: dict[str, list[list[float]]] = {}
        self._changed = threading.Condition()
        self._cache: dict[tuple[str, int, tuple[int, ...]], list[tuple[float, ...]]] = {}

    def add(self, entity: str, day: int, values: Sequence[float]) -> None:
        """Add a counted record's values to its entity's day (an open day, by the fold's rule)."""
        days = self._days.setdefault(entity, [])
        sums = self._sums.setdefault(entity, [])
        pos = bisect_left(days, day)
        if pos < len(days) and days[pos] == day:
            bucket = sums[pos]
            for i, v in enumerate(values):
                bucket[i] += v
        else:
            days.insert(pos, day)
            sums.insert(pos, list(values))

    def snapshot(self) -> dict[str, Any]:
        """The view's sums and final days, JSON-shaped: another process's copy of a folded feed."""
        return {"closed_through": self.closed_through, "days": self._days, "sums": self._sums}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Take the sums and final days of a `snapshot` of the same table's view."""
        self.closed_through = snapshot["closed_through"]
        self._days, self._sums = snapshot["days"], snapshot["sums"]
        self._cache.clear()

    def advance(self, clock_ms: int) -> None:
        """The feed's clock reached `clock_ms`: days up to `closed_through(clock_ms)` are final."""
        closed = self.table.closed_through(clock_ms)
        with self._changed:
            if self.closed_through is None or closed > self.closed_through:
                self.closed_through = closed
                self._changed.notify_all()

    def windows(self, entity: str, through_day: int, widths: Sequence[int]) -> list[tuple[float, ...]]:
        """Sums over the days `(through_day - width, through_day]`, one tuple per width.

        Raises `TableNotReady` if `through_day` is not final yet. Final days never change, so
        answers are remembered (the same merchant and day come back for every payment).
        """
        closed = self.closed_through
        if closed is None or through_day > closed:
            raise TableNotReady(self.table.name, through_day, -1 if closed is None else closed)
        key = (entity, through_day, tuple(widths))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        days = self._days.get(entity, [])
        sums = self._sums.get(entity, [])
        hi = bisect_right(days, through_day)
        out = []
        for width in widths:
            lo = bisect_right(days, through_day - width, 0, hi)
            total = [0.0] * len(self.table.columns)
            for bucket in sums[lo:hi]:
                for i, v in enumerate(bucket):
                    total[i] += v
            out.append(tuple(total))
        if len(self._cache) >= 500_000:
            self._cache.clear()
        self._cache[key] = out
        return out

    def wait_closed(self, day: int, timeout_s: float) -> bool:
        """Block until `day` is final or `timeout_s` passes; True if it is final."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self.closed_through is not None and self.closed_through >= day, timeout_s
            )
