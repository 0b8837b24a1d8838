"""The FeatureSet contract, checked on a sample of events (in the spirit of scikit-learn's
`check_estimator`): every use case's tests call `check_featureset`, so a new FeatureSet that
breaks a promise the drivers rely on fails with a message naming the promise, not later as a
training set that differs from the live rows.

The promises:

- `policies` say what depersonalization does with every field of every schema, and name no
  field no schema has: a field without a policy is a field nobody decided to protect;
- every row's keys are exactly `columns`, and each value has its declared type (None allowed:
  a feature that has no value yet);
- rows do not depend on the arrival order of events with the same order key, time and kind:
  two partitions, or two files, may deliver such ties in either order;
- an event delivered twice (same id) changes no row and no label: producers retry (but for
  the columns that count repeats by design, `repeat_counters`);
- when the FeatureSet declares optional feature groups (`groups`), a dataset without a group's
  fields has none of the group's features (`check_optional_groups`).

Events are run the way the batch driver runs them (`features.order`): the tables' feed first,
in the order given, then the other events by event time, kind and arrival.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from features.featureset import FeatureSet, LocalRunner, Record
from features.order import order_key

Event = tuple[str, Mapping[str, Any]]
"""(kind, raw payload) of one event, as a file or topic holds it."""
Parsed = tuple[str, msgspec.Struct]

_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (float, int), "bool": (bool,)}


def check_featureset(
    fs: FeatureSet,
    events: Iterable[Event],
    *,
    build_without: Callable[[frozenset[str]], FeatureSet] | None = None,
    repeat_counters: Iterable[str] = (),
    seed: int = 0,
) -> None:
    """Check every promise of the contract on `events`; raise AssertionError naming the first broken.

    `events` must be valid (a ValueError names the first that is not) and should make rows.
    `build_without(fields)` builds the same FeatureSet for events that lack `fields`; it is
    needed only when `fs` declares optional feature groups. `repeat_counters` are columns that
    count dropped repeats (a data-quality count), the only ones a repeat may change.
    """
    sample = list(events)
    check_policies(fs)
    parsed = parse_all(fs, sample)
    rows, labels = run(fs, parsed)
    if not rows:
        raise ValueError(f"{fs.name}: the sample made no feature rows, so it checks nothing; give more events")
    check_rows(fs, rows)
    check_ties(fs, parsed, rows, labels, seed)
    check_repeats(fs, parsed, rows, labels, frozenset(repeat_counters))
    if getattr(fs, "groups", ()):
        check_optional_groups(fs, sample, build_without)


def check_policies(fs: FeatureSet) -> None:
    """Every field of every schema has a policy, and every policy names a field of a schema."""
    policies = getattr(fs, "policies", None)
    assert isinstance(policies, Mapping), f"{type(fs).__name__} declares no `policies` mapping (field -> Policy)"
    fields = {f.name for schema in fs.schemas.values() for f in msgspec.structs.fields(schema)}
    missing = sorted(fields - set(policies))
    assert not missing, f"{type(fs).__name__}.policies has no policy for the schema fields {missing}"
    unknown = sorted(set(policies) - fields)
    assert not unknown, f"{type(fs).__name__}.policies names fields no schema has: {unknown}"


def parse_all(fs: FeatureSet, events: Sequence[Event]) -> list[Parsed]:
    """The events validated by the FeatureSet; ValueError naming the first invalid one."""
    parsed = []
    for i, (kind, payload) in enumerate(events):
        try:
            parsed.append((kind, fs.parse(kind, payload)))
        except ValueError as exc:
            raise ValueError(f"{fs.name}: sample event {i} ({kind}) is invalid: {exc}") from None
    return parsed


def run(fs: FeatureSet, events: Sequence[Parsed]) -> tuple[list[Record], list[Record]]:
    """Rows and labels of the events in the batch driver's order, on fresh state."""
    runner = LocalRunner(fs)
    rows: list[Record] = []
    labels: list[Record] = []
    feed = [event for kind, event in events if kind in fs.feed_kinds]
    keyed = sorted(
        (
            (order_key(fs, kind, event, read), event)
            for read, (kind, event) in enumerate(events)
            if kind not in fs.feed_kinds
        ),
        key=lambda item: item[0],
    )
    for event in (*feed, *(event for _, event in keyed)):
        outcome = runner.run(event, source="contract")
        rows.extend(outcome.rows)
        labels.extend(outcome.labels)
    return rows, labels


def check_rows(fs: FeatureSet, rows: Sequence[Record]) -> None:
    """Each row has exactly the declared columns, each value its declared type."""
    declared = set(fs.columns)
    for row in rows:
        keys = set(row)
        assert keys == declared, (
            f"{fs.name}: row {row.get(fs.row_id)!r} has columns not declared {sorted(keys - declared)} "
            f"and lacks declared columns {sorted(declared - keys)}"
        )
        for column, kind in fs.columns.items():
            value = row[column]
            if value is None:
                continue
            allowed = _TYPES.get(kind, (int,))
            ok = isinstance(value, allowed) and (kind == "bool" or not isinstance(value, bool))
            assert ok, (
                f"{fs.name}: column {column!r} is declared {kind} but row {row.get(fs.row_id)!r} holds "
                f"{type(value).__name__} {value!r}"
            )


def check_ties(
    fs: FeatureSet, events: Sequence[Parsed], rows: Sequence[Record], labels: Sequence[Record], seed: int
) -> None:
    """Shuffling the arrival order of the events makes the same rows: only ties are reordered,
    since the replay order sorts by event time and kind first."""
    shuffled = list(events)
    keyed = [i for i, (kind, _) in enumerate(shuffled) if kind not in fs.feed_kinds]
    picked = [shuffled[i] for i in keyed]
    random.Random(seed).shuffle(picked)
    for i, event in zip(keyed, picked, strict=True):
        shuffled[i] = event
    again, again_labels = run(fs, shuffled)
    _same(fs, rows, again, "rows", "events of equal time and kind arrive in another order")
    _same_labels(fs, labels, again_labels, "events of equal time and kind arrive in another order")


def check_repeats(
    fs: FeatureSet,
    events: Sequence[Parsed],
    rows: Sequence[Record],
    labels: Sequence[Record],
    counters: frozenset[str] = frozenset(),
) -> None:
    """Every event delivered twice in a row makes the same rows and labels as once (but for the
    columns in `counters`, which count repeats)."""
    doubled = [event for event in events for _ in range(2)]
    again, again_labels = run(fs, doubled)
    _same(fs, rows, again, "rows", "every event is delivered twice", counters)
    _same_labels(fs, labels, again_labels, "every event is delivered twice")


def check_optional_groups(
    fs: FeatureSet, events: Sequence[Event], build_without: Callable[[frozenset[str]], FeatureSet] | None
) -> None:
    """For each optional feature group: events without its fields, through a FeatureSet built
    without them, make rows without the group's features (and otherwise keep the contract)."""
    if build_without is None:
        raise ValueError(
            f"{type(fs).__name__} declares optional feature groups: pass build_without=(fields -> FeatureSet) "
            "to check that a missing field switches its features off"
        )
    for group in fs.groups:  # type: ignore[attr-defined]
        missing = frozenset(group.fields)
        smaller = build_without(missing)
        # A required field (a group on reference data keyed by it) stays: the reference goes instead.
        optional = missing - fs.required_fields()
        stripped = [(kind, {k: v for k, v in payload.items() if k not in optional}) for kind, payload in events]
        rows, _ = run(smaller, parse_all(smaller, stripped))
        switched_on = sorted(set(group.features) & set(smaller.columns))
        assert not switched_on, (
            f"{fs.name}: without {sorted(missing)} the group {group.name!r} still declares {switched_on}"
        )
        check_rows(smaller, rows)


def _same_labels(fs: FeatureSet, expected: Sequence[Record], actual: Sequence[Record], when: str) -> None:
    """The same set of labels: a sink stores a label once per row id and time, so a repeat may
    re-emit an identical one, never a different one."""
    before = sorted({msgspec.json.encode(r, order="sorted") for r in expected})
    after = sorted({msgspec.json.encode(r, order="sorted") for r in actual})
    assert before == after, (
        f"{fs.name}: when {when}, the labels differ: {len(before)} before, {len(after)} after; "
        f"first only before {next((b for b in before if b not in after), b'')!r}, "
        f"first only after {next((a for a in after if a not in before), b'')!r}"
    )


def _same(
    fs: FeatureSet,
    expected: Sequence[Record],
    actual: Sequence[Record],
    what: str,
    when: str,
    exempt: frozenset[str] = frozenset(),
) -> None:
    before = {str(r[fs.row_id]): r for r in expected}
    after = {str(r[fs.row_id]): r for r in actual}
    assert len(expected) == len(actual) and before.keys() == after.keys(), (
        f"{fs.name}: when {when}, the {what} differ: {len(expected)} before, {len(actual)} after; "
        f"only before {sorted(before.keys() - after.keys())[:3]}, only after {sorted(after.keys() - before.keys())[:3]}"
    )
    for ident, row in before.items():
        other = after[ident]
        differing = sorted(c for c in row if c not in exempt and not _equal(row[c], other.get(c)))
        assert not differing, (
            f"{fs.name}: when {when}, {what[:-1]} {ident!r} changes in {differing[:5]}: "
            f"{[(row[c], other.get(c)) for c in differing[:3]]}"
        )


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)
