"""The stream driver: a FeatureSet as a quixstreams Application, events in, feature rows out.

Per message of the events topic: validate (`FeatureSet.parse`), check its key, depersonalize,
then run the keyed stages with quixstreams' RocksDB `State` (changelog-backed, so a lost disk or
a moved partition is rebuilt from Kafka) passed straight into the stage. Only depersonalized
records ever reach a repartition topic, a changelog or an output.

The topology keeps each key's order at any number of partitions and replicas:

- Events are keyed by what upstream systems have (`FeatureSet.partition_key`: the raw customer
  id of a payment). A message whose key is not its event's is rejected (`wrong key`), so a key
  never lands in another key's state. The first step pseudonymizes and re-keys 1:1 (`group_by`
  to the pseudonym): all records of one pseudonym come from one upstream partition, in its order.
- Features of other entities come from tables (`features.tables`) fed by their own topic, the
  feed (fraud: the labels), which has ONE partition: its order is the tables' time rule. A
  pipeline of this Application folds it in changelogged state (repeats, label rows, dead
  letters); a thread of every replica reads the same feed from its start and folds it into the
  table views rows are read against. A row whose table day is not final yet waits for the feed
  (counted, and logged), and restarts from the last commit if the feed stays silent too long.

Outputs: feature rows on `<use case>-features`, label rows on `<use case>-labels`, dead letters
on `<use case>-deadletters`, and optionally all three into the training DuckDB tables.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from quixstreams import Application, State, message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import Topic, TopicConfig
from quixstreams.models.serializers.json import JSONSerializer

from features.featureset import READ_FAILURE, FeatureSet, InvalidEvent, Record, Stage, stage_failure
from features.state import DictState
from features.tables import Fold, TableNotReady, TableView
from serving.duckdb_sink import FeatureTableSink
from serving.poison import PoisonList
from serving.records import Item, dead_letter, dead_letter_key, encode_body
from serving.settings import LiveSettings
from serving.supervise import RetryLater, run_supervised

log = logging.getLogger("samestream.features")
PROCESS = "features"
KIND_HEADER = "type"
"""Kafka header naming an event's kind when its JSON has no `type` (`samestream produce` sets it)."""
TABLE_WAIT_S = 20.0
"""How long a row waits for a table day inside one run before the run restarts from its last
commit (a transaction must not stay open for long, and the group must see the process poll)."""


class TableStalled(RetryLater):
    """The feed has not closed a day a row needs for `TABLE_WAIT_S`: restart from the last commit."""


@dataclass
class FeatureCounts:
    """Exact counts of what the process has done since it started."""

    events: int = 0
    rows: int = 0
    labels: int = 0
    duplicates: int = 0
    late: int = 0
    """Feed records that came for a day already final, counted in the first open day."""
    table_waits: int = 0
    table_wait_s: float = 0.0
    dead: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in self.dead.most_common())
        waits = f", {self.table_waits:,} waits for tables ({self.table_wait_s:.1f} s)" if self.table_waits else ""
        return (
            f"{self.events:,} events -> {self.rows:,} feature rows, {self.labels:,} labels, "
            f"{self.duplicates:,} repeats dropped, {self.late:,} late feed records{waits}, "
            f"{sum(self.dead.values()):,} dead letters" + (f" ({reasons})" if reasons else "")
        )


def reason_class(reason: str) -> str:
    """The kind of a rejection (`schema violation`, `unknown reference`, ...): a reason's lead."""
    return reason.split(":", 1)[0]


class FeedReader:
    """Folds a FeatureSet's feed topic into table views, from its first offset, in a thread.

    Every replica runs one: the views must hold every final day any row of this replica may
    read, and the feed is small. Invalid messages are skipped here (the feed pipeline
    dead-letters them); valid ones go through the same fold as in the batch driver.
    """

    def __init__(self, fs: FeatureSet, settings: LiveSettings) -> None:
        self.fs = fs
        self.settings = settings
        self.views = {table.name: TableView(table) for table in fs.tables}
        self._folds = {table.name: DictState({}) for table in fs.tables}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{fs.name}-feed-reader", daemon=True)
        self.position = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap,
                "group.id": f"{self.settings.topics.group('feed-reader')}-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
            }
        )
        try:
            consumer.assign([TopicPartition(self.settings.topics.named(self.fs.feed), 0, OFFSET_BEGINNING)])
            while not self._stop.is_set():
                # poll returns as soon as one message is there (consume would wait out its timeout
                # unless 5,000 were), so the watermark that closes a day is folded at once.
                first = consumer.poll(0.2)
                if first is None:
                    continue
                for message in [first, *consumer.consume(num_messages=5_000, timeout=0)]:
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("feed reader: %s", error)
                        continue
                    self._fold(message.value(), message.headers())
                    self.position = message.offset() + 1
        except Exception as exc:  # the rows waiting on the views report it
            self.error = exc
            log.exception("feed reader stopped")
        finally:
            consumer.close()

    def _fold(self, value: bytes | None, headers: Any) -> None:
        if not value:
            return
        fs = self.fs
        try:
            event = fs.parse(header_kind(headers), value)
        except InvalidEvent:
            return
        kind = str(type(event).__struct_config__.tag)
        if kind not in fs.feed_kinds:
            return
        try:
            record = fs.depersonalize(event)
        except Exception:  # the feed pipeline dead-letters it
            return
        for table in fs.tables:
            if record["kind"] not in table.kinds and kind != "watermark":
                continue
            fold, day = table.fold(record, self._folds[table.name])
            view = self.views[table.name]
            if fold in (Fold.COUNTED, Fold.LATE):
                view.add(table.entity(record), day, table.values(record))
            view.advance(record["t"])


class FeatureProcess:
    """Builds and runs the feature process of one FeatureSet.

    Parameters
    ----------
    fs:
        The FeatureSet to run; the same object the batch driver runs.
    settings:
        Broker, guarantee, topic prefix, state directory.
    db_path:
        If given, feature rows, labels and dead letters also go into these DuckDB tables, so
        `materialize` can be fed from the topic (replayed from its earliest offset).
    on_message:
        Called with (topic, partition, offset) after each input message (progress bars).
    role:
        Names the consumer group (`<prefix><use case>-<role>`); a new role replays the events
        topic from its earliest offset with state of its own.
    publish:
        False writes to DuckDB only: a replay into the training tables that leaves the output
        topics (and the scorer reading them) untouched.
    """

    def __init__(
        self,
        fs: FeatureSet,
        settings: LiveSettings,
        db_path: str | Path | None = None,
        on_message: Callable[[str, int, int], None] | None = None,
        role: str = PROCESS,
        publish: bool = True,
    ) -> None:
        if not publish and db_path is None:
            raise ValueError("a feature process that does not publish needs a DuckDB file to write to")
        self.fs = fs
        self.settings = settings
        self.topics = settings.topics
        self.feed = settings.topics.named(fs.feed)
        self.counts = FeatureCounts()
        self._kinds = {schema: kind for kind, schema in fs.schemas.items()}
        self.sink = FeatureTableSink(fs, db_path) if db_path is not None else None
        self._on_message = on_message
        self._stop_after = 0
        # records re-keyed to the first stage, and records it has taken: `max_events` stops a
        # run only once the re-keyed records have caught up
        self._forwarded = self._staged = 0
        self._role = role
        self._publish = publish
        self.poison = PoisonList(settings.state_dir / f"{settings.topics.group(role)}-poison.json")
        self.reader = FeedReader(fs, settings) if fs.tables else None
        self.app = self._application()

    @property
    def views(self) -> Mapping[str, TableView]:
        return self.reader.views if self.reader is not None else {}

    def _application(self) -> Application:
        """A new Application with the pipeline wired in: one per (re)start, see `run_supervised`."""
        self.app = self.settings.application(self._role, on_message_processed=self._processed)
        self._build(self.app, self._publish)
        return self.app

    def _processed(self, topic: str, partition: int, offset: int) -> None:
        if self._on_message is not None:
            self._on_message(topic, partition, offset)
        if self._stop_after and self.counts.events >= self._stop_after and self._staged >= self._forwarded:
            self.app.stop()

    def _build(self, app: Application, publish: bool) -> None:
        fs = self.fs
        topics = self.topics
        events = app.topic(topics.events, value_deserializer="bytes", key_deserializer="bytes")
        outputs = {
            kind: app.topic(name, key_serializer="str", value_serializer=JSONSerializer(dumps=encode_body))
            for kind, name in (
                ("row", topics.features),
                ("label", topics.labels),
                ("dead", topics.deadletters),
            )
        }
        last = len(fs.stages) - 1
        if fs.partition_key is None:
            sdf = app.dataframe(events).apply(
                self._admit_and_run(fs.stages[0], last == 0), stateful=True, metadata=True, expand=True
            )
        else:
            sdf = app.dataframe(events).apply(self._admit_step, metadata=True, expand=True)
            sdf = sdf.group_by(
                _rekey(fs.stages[0], fs.row_id), name=fs.stages[0].name, key_serializer="str", key_deserializer="str"
            )
            sdf = sdf.apply(self._stage(fs.stages[0], 0, last == 0), stateful=True, metadata=True, expand=True)
        grouped = fs.partition_key is not None
        for i, stage in enumerate(fs.stages[1:], start=1):
            if grouped:
                sdf = self._hop(app, sdf, stage, events)
            else:
                sdf = sdf.group_by(
                    _rekey(stage, fs.row_id), name=stage.name, key_serializer="str", key_deserializer="str"
                )
                grouped = True
            sdf = sdf.apply(self._stage(stage, i, last=i == last), stateful=True, metadata=True, expand=True)
        streams = [sdf]
        if fs.tables:
            feed = app.topic(self.feed, value_deserializer="bytes", key_deserializer="bytes")
            folded = app.dataframe(feed).apply(self._admit_feed, metadata=True, expand=True)
            folded = folded.group_by(lambda _: "feed", name="feed", key_serializer="str", key_deserializer="str")
            streams.append(folded.apply(self._fold_feed, stateful=True, metadata=True, expand=True))
        for stream in streams:
            if publish:
                stream.to_topic(lambda item, *_: outputs[item[0]], key=lambda item: _output_key(item, fs.row_id))
            if self.sink is not None:
                stream.sink(self.sink)

    def _hop(self, app: Application, sdf: StreamingDataFrame, stage: Stage, events: Topic) -> StreamingDataFrame:
        """Re-key through an explicit topic: quixstreams allows one `group_by` per pipeline."""
        partitions = events.broker_config
        topic = app.topic(
            self.topics.stage(stage.name),
            key_serializer="str",
            key_deserializer="str",
            config=TopicConfig(
                num_partitions=partitions.num_partitions, replication_factor=partitions.replication_factor
            ),
        )
        sdf.to_topic(topic, key=_rekey(stage, self.fs.row_id))
        return app.dataframe(topic)

    # ------------------------------------------------------------------ admission

    def _entry(self) -> Item | None:
        """Note the message being processed (the poison rule); its dead letter if it crashed a run before."""
        ctx = message_context()
        position = (ctx.topic, ctx.partition, ctx.offset)
        self.poison.current = position
        reason = self.poison.reason(position)
        return None if reason is None else self._dead(None, reason, b"")

    def _parse(self, value: bytes | None, headers: Any) -> tuple[str | None, Any]:
        """The event of a raw message, or raise InvalidEvent saying why it is none."""
        if value is None:
            raise InvalidEvent("empty message: the value is NULL (a tombstone); an event is a JSON object")
        if not value.strip():
            raise InvalidEvent("empty message: the value is empty; an event is a JSON object")
        kind = header_kind(headers)
        event = self.fs.parse(kind, value)
        return self._kinds[type(event)], event

    def _admit(self, value: bytes | None, key: bytes | None, headers: Any) -> tuple[list[Item], Record | None]:
        """Validate, key-check and depersonalize one raw event: its record, or a dead letter."""
        self.counts.events += 1
        fs = self.fs
        kind = None
        try:
            kind, event = self._parse(value, headers)
            if kind in fs.feed_kinds:
                raise InvalidEvent(
                    f"wrong topic: {kind} events feed the tables and go to {self.feed}, not {self.topics.events}"
                )
            expected = fs.message_key(event)
            record = fs.depersonalize(event)
        except InvalidEvent as exc:
            return [self._dead(kind or self._sniff_kind(value), exc.reason, value)], None
        except Exception as exc:  # a FeatureSet bug must not stop the stream
            return [self._dead(kind, READ_FAILURE.format(error=type(exc).__name__), value)], None
        if key is None or key != expected.encode():
            field = fs.partition_key or f"{fs.stages[0].name} key ({expected!r} for this event)"
            what = "a NULL key" if key is None else "another key"
            reason = f"wrong key: the message has {what}; events must be keyed by their {field}, so its state is found"
            return [self._dead(kind, reason, value)], None
        return [], record

    def _admit_step(self, value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> list[Item]:
        crashed = self._entry()
        if crashed is not None:
            self.counts.events += 1
            self._forwarded += 1
            return [crashed]
        letters, record = self._admit(value, key, headers)
        items = letters if record is None else [("record", record)]
        self._forwarded += len(items)
        return items

    def _admit_and_run(
        self, stage: Stage, last: bool
    ) -> Callable[[bytes | None, bytes | None, int, Any, State], list[Item]]:
        """Admission and the first keyed stage in one step, when events are keyed by the first
        stage's key itself: the state of the message key is the state that stage needs."""
        run = self._stage(stage, 0, last)

        def admit_and_run(
            value: bytes | None, key: bytes | None, timestamp: int, headers: Any, state: State
        ) -> list[Item]:
            crashed = self._entry()
            if crashed is not None:
                self.counts.events += 1
                return [crashed]
            letters, record = self._admit(value, key, headers)
            if record is None:
                return letters
            return run(("record", record), key, timestamp, headers, state, entered=True)

        return admit_and_run

    def _sniff_kind(self, value: bytes | None) -> str | None:
        """The `type` of a rejected event, if it is readable and known: says where to look."""
        if not value:
            return None
        try:
            kind = _type_only(value).type
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            return None
        return kind if kind in self.fs.schemas else None

    # ------------------------------------------------------------------ stages

    def _stage(self, stage: Stage, index: int, last: bool) -> Callable[..., list[Item]]:
        """One keyed stage over records; other items pass by untouched. The first stage drops
        repeats and emits the labels of what it admits; the last one reads the tables."""
        out_kind = "row" if last else "record"
        version = self.fs.version
        fs = self.fs

        def run(item: Item, key: Any, timestamp: int, headers: Any, state: State, entered: bool = False) -> list[Item]:
            if not entered:
                self._staged += index == 0
                crashed = self._entry()
                if crashed is not None:
                    return [crashed]
            kind, body = item
            if kind != "record":
                return [item]
            try:
                outputs = stage.run(body, state)
                labels = fs.label_rows(body) if index == 0 and outputs is not None else []
            except Exception as exc:  # a record the stage cannot handle must not stop the stream
                return [self._dead(body.get("kind"), stage_failure(stage, exc, fs.redactor), body)]
            if outputs is None:
                self.counts.duplicates += 1
                return []
            self.counts.labels += len(labels)
            done: list[Item] = [("label", row) for row in labels]
            if not last:
                return done + [(out_kind, row) for row in outputs]
            for row in outputs:
                try:
                    row = self._attach(row)
                except TableStalled:
                    raise
                except Exception as exc:
                    reason = f"processing error in tables: {type(exc).__name__}: {fs.redactor.redact(str(exc))[0]}"
                    done.append(self._dead(body.get("kind"), reason, row))
                    continue
                row["featureset_version"] = version
                done.append(("row", row))
                self.counts.rows += 1
            return done

        return run

    def _attach(self, row: Record) -> Record:
        """The row with its table features, once the tables are final for its time."""
        started = None
        while True:
            try:
                return self.fs.attach(row, self.views)
            except TableNotReady as waiting:
                if started is None:
                    started = time.perf_counter()
                    self.counts.table_waits += 1
                assert self.reader is not None
                if self.reader.error is not None:
                    raise TableStalled(f"the feed reader failed: {self.reader.error}") from self.reader.error
                view = self.views[waiting.table]
                if view.wait_closed(waiting.day, 5.0):
                    self.counts.table_wait_s += time.perf_counter() - started
                    started = None
                    continue
                waited = time.perf_counter() - started
                log.warning(
                    "waiting %.0f s for table %s to close day %d (final through %s; the feed %s is read to offset %d)",
                    waited,
                    waiting.table,
                    waiting.day,
                    view.closed_through,
                    self.feed,
                    self.reader.position,
                )
                if waited >= TABLE_WAIT_S:
                    self.counts.table_wait_s += waited
                    raise TableStalled(
                        f"table {waiting.table} has not closed day {waiting.day} for {waited:.0f} s: the feed "
                        f"{self.feed} is silent (send a watermark when it has nothing to say)"
                    ) from None

    # ------------------------------------------------------------------ the feed

    def _admit_feed(self, value: bytes | None, key: bytes | None, timestamp: int, headers: Any) -> list[Item]:
        crashed = self._entry()
        if crashed is not None:
            return [crashed]
        fs = self.fs
        kind = None
        try:
            kind, event = self._parse(value, headers)
            if kind not in fs.feed_kinds:
                raise InvalidEvent(
                    f"wrong topic: {kind} events go to {self.topics.events}; {self.feed} carries "
                    f"{', '.join(sorted(fs.feed_kinds))}"
                )
            record = fs.depersonalize(event)
        except InvalidEvent as exc:
            return [self._dead(kind or self._sniff_kind(value), exc.reason, value)]
        except Exception as exc:
            return [self._dead(kind, READ_FAILURE.format(error=type(exc).__name__), value)]
        return [("record", record)]

    def _fold_feed(self, item: Item, key: Any, timestamp: int, headers: Any, state: State) -> list[Item]:
        """The feed's fold in changelogged state: repeats dropped, labels of the rest emitted."""
        kind, record = item
        if kind != "record":
            return [item]
        fs = self.fs
        duplicate = False
        try:
            for table in fs.tables:
                if record["kind"] in table.kinds or record["kind"] == "watermark":
                    fold, _ = table.fold(record, state)
                    duplicate = duplicate or fold is Fold.DUPLICATE
                    self.counts.late += fold is Fold.LATE
            labels = [] if duplicate else fs.label_rows(record)
        except Exception as exc:
            reason = f"processing error in tables: {type(exc).__name__}: {fs.redactor.redact(str(exc))[0]}"
            return [self._dead(record.get("kind"), reason, record)]
        self.counts.duplicates += duplicate
        self.counts.labels += len(labels)
        return [("label", row) for row in labels]

    def _dead(self, kind: str | None, reason: str, payload: Any) -> Item:
        self.counts.dead[reason_class(reason)] += 1
        if payload is None:
            payload = b""  # a NULL value: nothing of it to keep
        ctx = message_context()
        return dead_letter(self.fs, PROCESS, ctx.topic, ctx.partition, ctx.offset, kind, reason, payload)

    def run(self, idle_timeout: float = 0.0, max_events: int = 0) -> FeatureCounts:
        """Process until stopped (SIGINT/SIGTERM); or, if `idle_timeout` > 0, until no message
        has arrived for that many seconds (a replay of the topic from its earliest offset); or,
        if `max_events` > 0, until that many events have been processed."""
        self._stop_after = max_events
        started = time.perf_counter()
        if self.reader is not None:
            ensure_feed(self.settings.bootstrap, self.feed)
            self.reader.start()
        try:
            run_supervised(self._application, idle_timeout, PROCESS, self.poison)
        finally:
            if self.reader is not None:
                self.reader.stop()
            if self.sink is not None:
                self.sink.close()
        log.info("feature process stopped after %.1f s: %s", time.perf_counter() - started, self.counts.summary())
        return self.counts


def ensure_feed(bootstrap: str, name: str, timeout_s: float = 30.0) -> None:
    """Create the feed topic `name` with one partition if it is missing; refuse one with more.

    The feed's order is the tables' time rule, and Kafka orders one partition only.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = admin.list_topics(topic=name, timeout=timeout_s).topics.get(name)
    if topic is not None and topic.error is None:
        if len(topic.partitions) != 1:
            raise ValueError(
                f"{name} has {len(topic.partitions)} partitions; the tables' feed must have exactly 1, as its "
                "order is the tables' time rule (recreate it with one partition)"
            )
        return
    future = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name]
    try:
        future.result(timeout=timeout_s)
    except Exception as exc:  # created meanwhile by a producer or another replica
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


class _TypeOnly(msgspec.Struct):
    type: str | None = None


_type_only = msgspec.json.Decoder(_TypeOnly).decode


def header_kind(headers: Any) -> str | None:
    """The event kind a message's `type` header names, if it has a readable one."""
    for name, value in headers or ():
        if name == KIND_HEADER and isinstance(value, bytes):
            try:
                return value.decode()
            except UnicodeDecodeError:
                return None
    return None


def _rekey(stage: Stage, row_id: str) -> Callable[[Item], str]:
    """The repartition key of an item: the stage's key for records; side items keep a stable one."""

    def key(item: Item) -> str:
        kind, body = item
        if kind == "record":
            return stage.key(body)
        return _output_key(item, row_id)

    return key


def _output_key(item: Item, row_id: str) -> str:
    kind, body = item
    if kind == "dead":
        return dead_letter_key(body)
    return str(body[row_id])
