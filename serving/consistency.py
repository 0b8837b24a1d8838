"""Online/offline consistency: what the live feature process published against a batch recompute.

`check` reads every feature row the live process published (read_committed) with an event time
in a range, reads the same events from the topics they came from (the events topic, every
partition, and the tables' feed), recomputes the rows with the batch driver's runner in the
replay order (`features.order`: feed in feed order, the other events by event time), and compares
the two per feature: rows compared, rows missing from the stream, extra rows, rows whose value
differs and the largest difference. A correct topology gives zero everywhere; one that lets a
key's events reach its state out of order (the symptom of a re-key that gathers many partitions)
shows up as mismatches in the history features.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from features.featureset import FeatureSet, InvalidEvent, LocalRunner
from features.order import OrderKey, order_key
from serving.feature_process import header_kind
from serving.settings import LiveSettings

_decode = msgspec.json.Decoder(dict).decode


@dataclass
class FeatureDiff:
    """How one feature's live values compare with the batch recompute."""

    mismatching: int = 0
    max_abs_diff: float = 0.0


@dataclass
class ConsistencyReport:
    """The comparison over one time range."""

    start_ms: int
    end_ms: int
    compared: int = 0
    missing: int = 0
    """Rows the batch recompute makes that the live process did not publish."""
    extra: int = 0
    """Rows the live process published that the batch recompute does not make."""
    duplicated: int = 0
    """Rows the live process published more than once."""
    mismatching: int = 0
    """Rows with at least one feature that differs."""
    features: dict[str, FeatureDiff] = field(default_factory=dict)

    @property
    def consistent(self) -> bool:
        return not (self.missing or self.extra or self.duplicated or self.mismatching)

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow: totals, then `<feature>_mismatching` and `<feature>_max_abs_diff`."""
        out: dict[str, float] = {
            "rows_compared": self.compared,
            "rows_missing": self.missing,
            "rows_extra": self.extra,
            "rows_duplicated": self.duplicated,
            "rows_mismatching": self.mismatching,
            "consistency_rate": 1.0 - self.mismatching / self.compared if self.compared else 1.0,
        }
        for name, diff in self.features.items():
            out[f"{name}_mismatching"] = diff.mismatching
            out[f"{name}_max_abs_diff"] = diff.max_abs_diff
        return out


def check(fs: FeatureSet, settings: LiveSettings, start_ms: int, end_ms: int) -> ConsistencyReport:
    """Compare the live feature rows with event time in [start_ms, end_ms) with a batch recompute."""
    topics = settings.topics
    live: dict[str, dict[str, Any]] = {}
    report = ConsistencyReport(start_ms, end_ms, features={name: FeatureDiff() for name in fs.feature_names})
    for _, _, _, value, _ in _read(settings.bootstrap, topics.features):
        row = _decode(value) if value else None
        if not isinstance(row, dict) or fs.row_id not in row:
            continue
        if start_ms <= _row_time(fs, row) < end_ms:
            key = str(row[fs.row_id])
            report.duplicated += key in live
            live[key] = row
    batch = {str(row[fs.row_id]): row for row in recompute(fs, settings) if start_ms <= _row_time(fs, row) < end_ms}
    report.missing = len(batch.keys() - live.keys())
    report.extra = len(live.keys() - batch.keys())
    for key in batch.keys() & live.keys():
        report.compared += 1
        differs = False
        for name, diff in report.features.items():
            ours, theirs = live[key].get(name), batch[key].get(name)
            if ours == theirs:
                continue
            differs = True
            diff.mismatching += 1
            if isinstance(ours, int | float) and isinstance(theirs, int | float):
                gap = abs(float(ours) - float(theirs))
                diff.max_abs_diff = max(diff.max_abs_diff, gap if math.isfinite(gap) else math.inf)
            else:
                diff.max_abs_diff = math.inf
        report.mismatching += differs
    return report


def recompute(fs: FeatureSet, settings: LiveSettings) -> Iterator[dict[str, Any]]:
    """The rows the batch driver makes of the events on the topics, in the replay order."""
    runner = LocalRunner(fs)
    if fs.tables:
        for _, _, _, value, kind in _read(settings.bootstrap, settings.topics.named(fs.feed)):
            event = _parse(fs, kind, value)
            if event is not None and str(type(event).__struct_config__.tag) in fs.feed_kinds:
                yield from runner.run(event).rows
    keyed: list[tuple[OrderKey, Any]] = []
    for read, (_, _, _, value, kind) in enumerate(_read(settings.bootstrap, settings.topics.events)):
        event = _parse(fs, kind, value)
        if event is None:
            continue
        tag = str(type(event).__struct_config__.tag)
        if tag in fs.stream_kinds:
            keyed.append((order_key(fs, tag, event, read), event))
    keyed.sort(key=lambda item: item[0])
    for _, event in keyed:
        yield from runner.run(event).rows


def _parse(fs: FeatureSet, kind: str | None, value: bytes | None) -> Any:
    if not value:
        return None
    try:
        return fs.parse(kind, value)
    except InvalidEvent:
        return None


def _row_time(fs: FeatureSet, row: dict[str, Any]) -> int:
    try:
        return fs.row_time(row)
    except (KeyError, TypeError, ValueError):
        return -1


def _read(bootstrap: str, topic: str) -> Iterator[tuple[int, int, bytes | None, bytes | None, str | None]]:
    """Every committed message of `topic` up to its end as of now: (partition, offset, key, value, kind header)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"consistency-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        while pending:
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(message.partition())
                        continue
                    raise RuntimeError(f"reading {topic}: {error}")
                partition, offset = message.partition(), message.offset()
                if partition not in pending:
                    continue
                yield partition, offset, message.key(), message.value(), header_kind(message.headers())
                if offset + 1 >= ends[partition]:
                    pending.discard(partition)
    finally:
        consumer.close()
