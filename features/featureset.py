"""The FeatureSet contract every use case implements, and the in-process runner.

A FeatureSet turns raw events into depersonalized feature rows through a short chain of keyed
stages. It holds no I/O: the batch driver (training) and the stream driver (serving) feed it
events and own the state stores, which is what keeps training and serving features identical.
"""

from __future__ import annotations

import hashlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from types import ModuleType
from typing import Any, ClassVar

import msgspec

from features.depersonalize import Policy, Redactor, redact_payload
from features.state import DictState, DictStore, State
from features.tables import WATERMARK, DailyTable, Fold, TableNotReady, TableView

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

Record = dict[str, Any]
"""A JSON-shaped, depersonalized event or row: what flows between stages and out of them."""


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exact (no float rounding)."""
    return (moment - EPOCH) // _MS


class InvalidEvent(ValueError):
    """An event that cannot be processed; `reason` says what was wrong and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Stage:
    """One keyed step: `process(record, state)` sees only the state of `key(record)`.

    With an `event_id`, the stage drops a repeat (a record whose id its key has seen within
    `horizon_ms` of the key's latest event time) before it touches the state: producers retry
    and Kafka delivers at least once upstream, so a repeat must change nothing. The ids live in
    the key's own state, so the check costs one state value and is the same in both drivers.
    """

    name: str
    key: Callable[[Record], str]
    process: Callable[[Record, State], list[Record]]
    event_id: Callable[[Record], str] | None = None
    horizon_ms: int = 7 * 86_400_000

    def run(self, record: Record, state: State) -> list[Record] | None:
        """The stage's outputs for `record`, or None if it is a repeat (dropped, state untouched)."""
        if self.event_id is not None:
            ident = self.event_id(record)
            t: int = record["t"]
            seen: list[list[Any]] = state.get(SEEN) or []
            if any(entry[1] == ident for entry in seen):
                return None
            latest = max(t, max((entry[0] for entry in seen), default=t))
            seen = [entry for entry in seen if entry[0] > latest - self.horizon_ms]
            seen.append([t, ident])
            state.set(SEEN, seen)
        return self.process(record, state)


SEEN = "__seen__"
"""State key of a stage's recent event ids (`Stage.event_id`); FeatureSet code never uses it."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected event: why, where it came from, and its payload with personal data masked."""

    source: str
    position: str
    kind: str
    reason: str
    payload: str


@dataclass(frozen=True, slots=True)
class FeatureGroup:
    """Features that exist only when the events carry `fields` (and, with `reference`, when the
    FeatureSet has that reference data): a dataset without them gets neither the features nor
    their `columns`, rather than constants computed from stand-ins."""

    name: str
    fields: tuple[str, ...]
    """Schema fields the group's features are computed from; an event of a kind that has one
    of them must carry it when the group is on."""
    features: tuple[str, ...]
    columns: tuple[str, ...] = ()
    """Row columns of the group that are not model features (e.g. the category's name)."""
    reference: str | None = None
    """Reference data the group needs (e.g. `merchants`); off without it."""


@dataclass(slots=True)
class Outcome:
    """What one event produced: feature rows, label rows, dead letters.

    A rejected event has one dead letter; a record a stage fails on adds one, while the
    event's other records and labels still come out, as they do in the stream.
    """

    rows: list[Record] = field(default_factory=list)
    labels: list[Record] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicate: bool = False
    """The event repeated one already seen (same id, within the horizon) and changed nothing."""

    @property
    def dead_letter(self) -> DeadLetter | None:
        """The first dead letter, if the event (or a record of it) was rejected."""
        return self.dead_letters[0] if self.dead_letters else None


class FeatureSet(ABC):
    """Plain, versioned feature code for one use case.

    Subclasses declare their event schemas, the personal fields of those events, the columns
    of the rows they emit and the model features among them, and implement `depersonalize`,
    `event_time_ms` and `stages`. Everything a model is trained on comes out of these methods.
    """

    name: ClassVar[str]
    schemas: ClassVar[Mapping[str, type[msgspec.Struct]]]
    """Event kind -> schema; the kind is also the `type` tag of events on a shared topic."""
    kind_order: ClassVar[Mapping[str, int]]
    """Tie-break among kinds at one timestamp (labels known at t count for a payment at t)."""
    policies: ClassVar[Mapping[str, Policy]]
    """Field -> what depersonalization does with it; every field of every schema has one."""
    columns: ClassVar[Mapping[str, str]]
    """Row column -> one of str, int, float, bool, ts_ms (epoch milliseconds)."""
    feature_names: ClassVar[tuple[str, ...]]
    """The numeric columns a model takes as input, in order."""
    label_columns: ClassVar[Mapping[str, str]]
    entity_column: ClassVar[str]
    """Row column naming the entity a row is about (its pseudonym), e.g. the card."""
    row_id: ClassVar[str]
    """Row column that identifies a row and joins it to its label."""
    modules: ClassVar[tuple[ModuleType, ...]] = ()
    """Modules whose source defines this FeatureSet; their hash is its version."""
    partition_key: ClassVar[str | None] = None
    """Raw event field that upstream systems key events by (e.g. `customer_id`): the first stage
    re-keys 1:1 from it to its own key (the pseudonym), so a producer needs no secret and one
    key's events reach the stage from one partition, in order. None: events are keyed by the
    first stage's key itself (a store id, which is not personal)."""
    tables: ClassVar[tuple[DailyTable, ...]] = ()
    """Tables of other entities' features (`features.tables`), built from a feed of their own."""
    feed: ClassVar[str] = "feed"
    """Names the tables' feed: its topic is `<use case>-<feed>`."""
    groups: ClassVar[tuple[FeatureGroup, ...]] = ()
    """Optional features by the fields they need; `columns` and `feature_names` declare them all."""
    families: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Model features by what they measure, for the ablation report (`samestream train --ablation`)."""

    def __init__(self, fields: Iterable[str] | None = None, references: Iterable[str] | None = None) -> None:
        """`fields`: the optional fields the events carry (None: all of them); `references`: the
        reference data at hand (None: all). Groups whose fields or reference are missing are off:
        their features are not in this instance's `columns` and `feature_names`, and their
        names are in `params()`, so the version differs."""
        self.redactor = Redactor()
        self._decoders = {kind: msgspec.json.Decoder(schema) for kind, schema in self.schemas.items()}
        self._any_decoder = msgspec.json.Decoder(_union(tuple(self.schemas.values())))
        present = None if fields is None else frozenset(fields) | self.required_fields()
        at_hand = None if references is None else frozenset(references)
        self.enabled: tuple[str, ...] = tuple(
            g.name
            for g in self.groups
            if (present is None or present.issuperset(g.fields))
            and (g.reference is None or at_hand is None or g.reference in at_hand)
        )
        off = {c for g in self.groups if g.name not in self.enabled for c in (*g.features, *g.columns)}
        if off:  # the class declares every column; this instance has only its groups'
            vars(self).update(
                columns={c: t for c, t in type(self).columns.items() if c not in off},
                feature_names=tuple(f for f in type(self).feature_names if f not in off),
            )
        self._needed = {
            kind: tuple(
                (f, g.name)
                for g in self.groups
                if g.name in self.enabled
                for f in g.fields
                if f in schema.__struct_fields__
            )
            for kind, schema in self.schemas.items()
        }

    @cached_property
    def version(self) -> str:
        """Hash of the definition: the source of every module that shapes the rows, and params."""
        digest = hashlib.sha256()
        for module in (*_core_modules(), *self.modules, inspect.getmodule(type(self))):
            digest.update(inspect.getsource(module).encode())  # type: ignore[arg-type]
        digest.update(repr(sorted(self.params().items())).encode())
        return digest.hexdigest()[:12]

    def params(self) -> dict[str, Any]:
        """Settings that change the rows (not secrets); part of the version. Subclasses that add
        their own extend this one's: the feature groups that are on, where there are groups."""
        return {"groups": list(self.enabled)} if self.groups else {}

    @classmethod
    def required_fields(cls) -> frozenset[str]:
        """Fields every event of a kind that has them carries (no default): always present."""
        return frozenset(f.encode_name for s in cls.schemas.values() for f in msgspec.structs.fields(s) if f.required)

    @classmethod
    def optional_fields(cls) -> frozenset[str]:
        """The fields some feature group needs that a dataset may lack."""
        return frozenset(f for g in cls.groups for f in g.fields) - cls.required_fields()

    def parse(self, kind: str | None, payload: bytes | str | Mapping[str, Any]) -> msgspec.Struct:
        """Validate one raw event into its schema, or raise `InvalidEvent` saying why.

        `kind` names the schema (a file of payments); None reads it from the payload's `type`
        field (a topic that carries several kinds). Bytes are JSON; a mapping comes from a
        columnar file, where CSV strings are converted to the declared types. A parsed event
        passes `check` and has an event time, so no driver meets a bad value later.
        """
        try:
            if isinstance(payload, bytes | str):
                decoder = self._any_decoder if kind is None else self._decoder(kind)
                event = decoder.decode(payload)
            else:
                schema = self._schema(kind if kind is not None else str(payload.get("type")))
                event = msgspec.convert(payload, schema, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidEvent(f"schema violation: {self._problems(kind, payload) or exc}") from None
        except msgspec.DecodeError as exc:
            raise InvalidEvent(f"schema violation: {exc}") from None
        except InvalidEvent:
            raise
        except (UnicodeDecodeError, RecursionError, OverflowError, ValueError) as exc:
            raise InvalidEvent(f"unreadable payload: {type(exc).__name__}: {exc}") from None
        try:
            self._check_groups(event)
            self.check(event)
            self.event_time_ms(event)
        except InvalidEvent:
            raise
        except (OverflowError, ValueError) as exc:  # e.g. a valid datetime no calendar can place
            raise InvalidEvent(f"impossible value: {type(exc).__name__}: {exc}") from None
        return event

    def _problems(self, kind: str | None, payload: bytes | str | Mapping[str, Any]) -> str:
        """Every field of an invalid event that breaks its schema, in one reason ("" if the
        problem is not one of its fields'): a user fixes an input once, not once per field."""
        strict = isinstance(payload, bytes | str)
        try:
            data = msgspec.json.decode(payload) if isinstance(payload, bytes | str) else payload
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, ValueError):
            return ""
        if not isinstance(data, Mapping):
            return ""
        schema = self.schemas.get(kind if kind is not None else str(data.get("type")))
        if schema is None:
            return ""
        problems = []
        for f in msgspec.structs.fields(schema):
            if f.encode_name not in data:
                if f.required:
                    problems.append(f"Object missing required field `{f.encode_name}`")
                continue
            try:
                msgspec.convert(data[f.encode_name], f.type, strict=strict)
            except msgspec.ValidationError as exc:
                problems.append(f"{exc} - at `$.{f.encode_name}`")
            except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                problems.append(f"{type(exc).__name__} - at `$.{f.encode_name}`")
        return "; ".join(problems)

    def _check_groups(self, event: msgspec.Struct) -> None:
        """An event must carry the fields of every group that is on (the model expects their features)."""
        needed = self._needed.get(str(type(event).__struct_config__.tag), ())
        missing = [(f, group) for f, group in needed if getattr(event, f) is None]
        if missing:
            raise InvalidEvent(
                "missing field(s) "
                + ", ".join(f"`{f}` (feature group {group})" for f, group in missing)
                + ": this FeatureSet was built for events that carry them"
            )

    def _decoder(self, kind: str) -> msgspec.json.Decoder:
        try:
            return self._decoders[kind]
        except KeyError:
            raise InvalidEvent(f"unknown event kind {kind!r}; expected one of {sorted(self.schemas)}") from None

    def _schema(self, kind: str) -> type[msgspec.Struct]:
        try:
            return self.schemas[kind]
        except KeyError:
            raise InvalidEvent(f"unknown event kind {kind!r}; expected one of {sorted(self.schemas)}") from None

    def check(self, event: msgspec.Struct) -> None:  # noqa: B027 - an optional hook: most rules fit a schema
        """Rules a schema cannot express (unknown references, impossible values)."""

    @abstractmethod
    def event_time_ms(self, event: msgspec.Struct) -> int:
        """When the event happened in the world: the order both drivers replay in."""

    @abstractmethod
    def depersonalize(self, event: msgspec.Struct) -> Record:
        """The first step: the event as a record with nothing identifying left in it."""

    @property
    @abstractmethod
    def stages(self) -> tuple[Stage, ...]:
        """The keyed steps, in order; the last one emits feature rows."""

    def label_rows(self, record: Record) -> list[Record]:
        """Label rows carried by a depersonalized record (none for most kinds)."""
        return []

    def row_time(self, row: Record) -> int:
        """Event time of a row, in epoch ms: the time tables are read as of."""
        return int(row["event_time"])

    def attach(self, row: Record, views: Mapping[str, TableView]) -> Record:
        """Add the features read from the tables to a row of the last stage (as of its time).

        Raises `TableNotReady` when a view is not final far enough yet; a batch driver's views
        are, since it folds the whole feed first.
        """
        return row

    @cached_property
    def feed_kinds(self) -> frozenset[str]:
        """Event kinds that travel on the tables' feed rather than the events topic."""
        if not self.tables:
            return frozenset()
        return frozenset(kind for table in self.tables for kind in table.kinds) | {WATERMARK}

    @cached_property
    def stream_kinds(self) -> frozenset[str]:
        """Event kinds that travel on the events topic, through the keyed stages."""
        return frozenset(self.schemas) - self.feed_kinds

    def message_key(self, event: msgspec.Struct) -> str:
        """The Kafka key of an event on the events topic: what upstream systems key it by."""
        if self.partition_key is not None:
            return str(getattr(event, self.partition_key))
        return self.stages[0].key(self.depersonalize(event))

    @cached_property
    def personal_fields(self) -> frozenset[str]:
        """Fields whose raw value must never leave the process (all but the kept ones)."""
        return frozenset(f for f, p in self.policies.items() if p is not Policy.KEEP)

    def dead_letter(self, source: str, position: str, kind: str | None, reason: str, payload: Any) -> DeadLetter:
        """A dead letter for a rejected payload, safe to store: personal data masked."""
        return DeadLetter(
            source=source,
            position=position,
            kind=kind or "unknown",
            reason=reason,
            payload=redact_payload(payload, self.personal_fields, self.redactor),
        )


READ_FAILURE = "processing error: {error} while reading the event"
"""Reason of an event the FeatureSet failed to depersonalize: the error's type only, as its
message may quote the raw event's personal data."""


def stage_failure(stage: Stage, exc: Exception, redactor: Redactor) -> str:
    """Reason of a record a stage failed on (both drivers word it alike); the message is redacted."""
    return f"processing error in stage {stage.name}: {type(exc).__name__}: {redactor.redact(str(exc))[0]}"


def _union(types: tuple[type, ...]) -> Any:
    union: Any = types[0]
    for t in types[1:]:
        union = union | t
    return union


def _core_modules() -> tuple[ModuleType, ...]:
    import features.depersonalize
    import features.featureset
    import features.geo
    import features.tables
    import features.windows

    return (features.depersonalize, features.featureset, features.geo, features.tables, features.windows)


class LocalRunner:
    """Runs a FeatureSet in this process, one event at a time, with in-memory state.

    The batch driver feeds it the tables' feed first (`fold`), in feed order, then the other
    events in event-time order (`run`); tests feed it events one by one. Stages run in order,
    each with the state of its own key, as the stream driver runs them across repartitioned
    topics. Events given to `run` in event-time order are also the feed's watermark: a row that
    needs a table day the feed has not closed yet closes it at the row's time, as everything
    known before that time has been given.
    """

    def __init__(self, featureset: FeatureSet) -> None:
        self.featureset = featureset
        self.stores = {stage.name: DictStore() for stage in featureset.stages}
        self._chain = [(stage, self.stores[stage.name]) for stage in featureset.stages]
        self.views = {table.name: TableView(table) for table in featureset.tables}
        self._fold_data: dict[str, dict[str, Any]] = {table.name: {} for table in featureset.tables}
        self._folds = {name: DictState(data) for name, data in self._fold_data.items()}

    def run(self, event: msgspec.Struct, source: str = "inline", position: str = "") -> Outcome:
        """Process one validated event: a feed event into the tables, any other through every stage.

        An event the FeatureSet's own code fails on becomes a dead letter with the same reason
        the stream driver gives it, so a bug costs one event, not the run.
        """
        fs = self.featureset
        kind = str(type(event).__struct_config__.tag)
        try:
            record = fs.depersonalize(event)
            labels = fs.label_rows(record)
        except Exception as exc:
            reason = READ_FAILURE.format(error=type(exc).__name__)
            return Outcome(dead_letters=[fs.dead_letter(source, position, kind, reason, msgspec.to_builtins(event))])
        if kind in fs.feed_kinds:
            return self._feed(record, labels)
        outcome = Outcome()
        records = [record]
        for i, (stage, store) in enumerate(self._chain):
            done: list[Record] = []
            for r in records:
                try:
                    out = stage.run(r, store.state(stage.key(r)))
                except Exception as exc:
                    reason = stage_failure(stage, exc, fs.redactor)
                    outcome.dead_letters.append(fs.dead_letter(source, position, r.get("kind", kind), reason, r))
                    continue
                if out is None:
                    outcome.duplicate = True
                    continue
                done.extend(out)
            if i == 0 and not outcome.duplicate:
                outcome.labels = labels
            records = done
        for row in records:
            try:
                outcome.rows.append(self._attach(row))
            except Exception as exc:
                reason = f"processing error in tables: {type(exc).__name__}: {fs.redactor.redact(str(exc))[0]}"
                outcome.dead_letters.append(fs.dead_letter(source, position, kind, reason, row))
        return outcome

    def tables_snapshot(self) -> dict[str, Any]:
        """The folded tables (views and fold bookkeeping), for a runner in another process."""
        return {name: {"view": view.snapshot(), "fold": self._fold_data[name]} for name, view in self.views.items()}

    def restore_tables(self, snapshot: Mapping[str, Any]) -> None:
        """Continue from the tables another runner folded (`tables_snapshot`)."""
        for name, part in snapshot.items():
            self.views[name].restore(part["view"])
            self._fold_data[name] = dict(part["fold"])
            self._folds[name] = DictState(self._fold_data[name])

    def _feed(self, record: Record, labels: list[Record]) -> Outcome:
        """Fold one feed record into every table it feeds; its label rows unless it is a repeat."""
        duplicate = False
        for table in self.featureset.tables:
            if record["kind"] not in table.kinds and record["kind"] != WATERMARK:
                continue
            fold, day = table.fold(record, self._folds[table.name])
            view = self.views[table.name]
            if fold in (Fold.COUNTED, Fold.LATE):
                view.add(table.entity(record), day, table.values(record))
            duplicate = duplicate or fold is Fold.DUPLICATE
            view.advance(record["t"])
        return Outcome(labels=[] if duplicate else labels, duplicate=duplicate)

    def _attach(self, row: Record) -> Record:
        try:
            return self.featureset.attach(row, self.views)
        except TableNotReady:
            self._feed({"kind": WATERMARK, "t": self.featureset.row_time(row)}, [])
            return self.featureset.attach(row, self.views)

    def process(
        self,
        kind: str | None,
        payload: bytes | str | Mapping[str, Any],
        source: str = "inline",
        position: str = "",
    ) -> Outcome:
        """Validate and run one raw event; a bad one comes back as a dead letter, never raised."""
        try:
            event = self.featureset.parse(kind, payload)
        except InvalidEvent as exc:
            return Outcome(dead_letters=[self.featureset.dead_letter(source, position, kind, exc.reason, payload)])
        return self.run(event, source, position)
