"""The stream driver: a FeatureSet as a quixstreams Application, events in, feature rows out.

Per message of the events topic: validate (`FeatureSet.parse`), depersonalize, then run the
keyed stages with quixstreams' RocksDB `State` (changelog-backed, so a lost disk or a moved
partition is rebuilt from Kafka) passed straight into `stage.process(record, state)`. Between
stages the stream is re-keyed with `group_by` (a repartition topic when the input has several
partitions); only depersonalized records ever reach a repartition topic or a changelog.

The first stage runs on the events topic as it is keyed: quixstreams scopes state by message
key, so an event whose key is not its first-stage key would update the wrong state and is
rejected instead. Every rejected event becomes a dead letter and the stream goes on.

Outputs: feature rows on `<use case>-features`, label rows on `<use case>-labels`, dead letters
on `<use case>-deadletters`, and optionally all three into the training DuckDB tables.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from quixstreams import Application, State, message_context
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.models import Topic, TopicConfig
from quixstreams.models.serializers.json import JSONSerializer

from features.featureset import READ_FAILURE, FeatureSet, InvalidEvent, Record, Stage, stage_failure
from serving.duckdb_sink import FeatureTableSink
from serving.records import Item, dead_letter, dead_letter_key, encode_body
from serving.settings import LiveSettings
from serving.supervise import run_supervised

log = logging.getLogger("samestream.features")
PROCESS = "features"


@dataclass
class FeatureCounts:
    """Exact counts of what the process has done since it started."""

    events: int = 0
    rows: int = 0
    labels: int = 0
    dead: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in self.dead.most_common())
        return (
            f"{self.events:,} events -> {self.rows:,} feature rows, {self.labels:,} labels, "
            f"{sum(self.dead.values()):,} dead letters" + (f" ({reasons})" if reasons else "")
        )


def reason_class(reason: str) -> str:
    """The kind of a rejection (`schema violation`, `unknown reference`, ...): a reason's lead."""
    return reason.split(":", 1)[0]


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
        self.counts = FeatureCounts()
        self._kinds = {schema: kind for kind, schema in fs.schemas.items()}
        self.sink = FeatureTableSink(fs, db_path) if db_path is not None else None
        self._on_message = on_message
        self._stop_after = 0
        self._role = role
        self._publish = publish
        self.app = self._application()

    def _application(self) -> Application:
        """A new Application with the pipeline wired in: one per (re)start, see `run_supervised`."""
        self.app = self.settings.application(self._role, on_message_processed=self._processed)
        self._build(self.app, self._publish)
        return self.app

    def _processed(self, topic: str, partition: int, offset: int) -> None:
        if self._on_message is not None:
            self._on_message(topic, partition, offset)
        if self._stop_after and self.counts.events >= self._stop_after and topic == self.topics.events:
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
        sdf = app.dataframe(events).apply(
            self._first_stage(fs.stages[0], last == 0), stateful=True, metadata=True, expand=True
        )
        for i, stage in enumerate(fs.stages[1:], start=1):
            if i == 1:
                sdf = sdf.group_by(
                    _rekey(stage, fs.row_id), name=stage.name, key_serializer="str", key_deserializer="str"
                )
            else:
                sdf = self._hop(app, sdf, stage, events)
            sdf = sdf.apply(self._stage(stage, last=i == last), stateful=True, metadata=True, expand=True)
        if publish:
            sdf.to_topic(lambda item, *_: outputs[item[0]], key=lambda item: _output_key(item, fs.row_id))
        if self.sink is not None:
            sdf.sink(self.sink)

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

    def _admit(self, value: bytes, key: bytes | None) -> tuple[list[Item], Record | None]:
        """Validate and depersonalize one raw event: its label items and its record, or a dead
        letter and no record if anything is wrong."""
        self.counts.events += 1
        fs = self.fs
        kind = None
        try:
            event = fs.parse(None, value)
            kind = self._kinds[type(event)]
            record = fs.depersonalize(event)
            labels = fs.label_rows(record)
            expected = fs.stages[0].key(record)
        except InvalidEvent as exc:
            return [self._dead(kind or self._sniff_kind(value), exc.reason, value)], None
        except Exception as exc:  # a FeatureSet bug must not stop the stream
            return [self._dead(kind, READ_FAILURE.format(error=type(exc).__name__), value)], None
        if key is None or key != expected.encode():
            reason = (
                f"wrong key: events must be keyed by their {fs.stages[0].name} key "
                f"({fs.stages[0].name} {expected!r} for this event), so its state is found"
            )
            return [self._dead(kind, reason, value)], None
        self.counts.labels += len(labels)
        return [("label", row) for row in labels], record

    def _sniff_kind(self, value: bytes) -> str | None:
        """The `type` of a rejected event, if it is readable and known: says where to look."""
        try:
            kind = _type_only(value).type
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            return None
        return kind if kind in self.fs.schemas else None

    def _first_stage(self, stage: Stage, last: bool) -> Callable[[bytes, bytes | None, int, Any, State], list[Item]]:
        """Admission and the first keyed stage in one step: the events topic is keyed by the
        first stage's key, so the state of the message key is the state that stage needs."""
        run = self._stage(stage, last)

        def admit_and_run(value: bytes, key: bytes | None, timestamp: int, headers: Any, state: State) -> list[Item]:
            admitted, record = self._admit(value, key)
            if record is None:
                return admitted
            return [*admitted, *run(("record", record), key, timestamp, headers, state)]

        return admit_and_run

    def _stage(self, stage: Stage, last: bool) -> Callable[[Item, Any, int, Any, State], list[Item]]:
        """One keyed stage over records; other items pass by untouched."""
        out_kind = "row" if last else "record"
        version = self.fs.version

        def run(item: Item, key: Any, timestamp: int, headers: Any, state: State) -> list[Item]:
            kind, body = item
            if kind != "record":
                return [item]
            try:
                outputs = stage.process(body, state)
            except Exception as exc:  # a record the stage cannot handle must not stop the stream
                return [self._dead(body.get("kind"), stage_failure(stage, exc, self.fs.redactor), body)]
            if last:
                self.counts.rows += len(outputs)
                for row in outputs:
                    row["featureset_version"] = version
            return [(out_kind, row) for row in outputs]

        return run

    def _dead(self, kind: str | None, reason: str, payload: Any) -> Item:
        self.counts.dead[reason_class(reason)] += 1
        ctx = message_context()
        return dead_letter(self.fs, PROCESS, ctx.topic, ctx.partition, ctx.offset, kind, reason, payload)

    def run(self, idle_timeout: float = 0.0, max_events: int = 0) -> FeatureCounts:
        """Process until stopped (SIGINT/SIGTERM); or, if `idle_timeout` > 0, until no message
        has arrived for that many seconds (a replay of the topic from its earliest offset); or,
        if `max_events` > 0, until that many events have been processed."""
        self._stop_after = max_events
        started = time.perf_counter()
        try:
            run_supervised(self._application, idle_timeout, PROCESS)
        finally:
            if self.sink is not None:
                self.sink.close()
        log.info("feature process stopped after %.1f s: %s", time.perf_counter() - started, self.counts.summary())
        return self.counts


class _TypeOnly(msgspec.Struct):
    type: str | None = None


_type_only = msgspec.json.Decoder(_TypeOnly).decode


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
