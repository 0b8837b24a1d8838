"""Replay producer: event files onto the use case's topics, in the batch driver's replay order.

Events that feed keyed stages go to `<use case>-events`, merged the way the batch driver merges
them (`features.order`: event time, then kind, then input order) and keyed by what upstream
systems key them by (`FeatureSet.message_key`: the raw customer id, so no pseudonym secret is
needed here), which puts one key's events on one partition, in that order. Events of the
tables' feed (fraud: labels) go to the feed topic in feed order, interleaved with the others by
time so a paced replay carries labels as they become known, with a watermark every hour of event
time (one that never makes a label late) and a last one at the latest event time it replayed: the
stream's tables close the days the batch driver's close, as a live feed's watermarks close them.

Files are read by `features.sources`, as the batch driver reads them, through the same input
mapping (`features.mapping`) where one is given, and every valid event is published as the
typed JSON of its schema, whatever file it came from: a mapped file's events are the messages
the same events already in the schema make. Events the FeatureSet
rejects are published too, as they were read (a CSV row as JSON with its values typed where they
convert), in their file position and with a `type` header naming the file's kind, keyed by their
raw key where it can be read: the feature process rejects them with the reasons the batch driver
gives.

Pacing: as fast as possible, at a fixed rate, or at the events' own pace sped up by a factor.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from features import sources
from features.featureset import FeatureSet, InvalidEvent
from features.mapping import Mapping, mapped_payloads
from features.order import OrderKey, order_key
from features.tables import WATERMARK
from features.usecases import get_use_case

WATERMARK_EVERY_MS = 3_600_000
"""The replayed feed carries a watermark every hour of event time (see `_with_watermarks`)."""

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class EventFile:
    """One event file and the kind of event it holds (`payment`, `label`, ...)."""

    kind: str
    path: Path


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to publish, with the event time it is replayed at."""

    event_time_ms: int
    key: bytes | None
    value: bytes
    kind: str | None = None
    """Sent as the `type` header, so a payload without a `type` field is read as its file's kind."""
    feed: bool = False
    """Goes to the tables' feed topic rather than the events topic."""
    invalid: bool = False
    """The FeatureSet rejects it: published for the feature process to dead-letter."""


@dataclass(frozen=True, slots=True)
class ReplayReport:
    topic: str
    published: int
    invalid: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0


def default_files(use_case: str, folder: Path) -> list[EventFile]:
    """The event files `simulate` writes for a use case, whichever format is there."""
    found = []
    for kind, stem in get_use_case(use_case).files.items():
        matches = [folder / f"{stem}{ext}" for ext in (".jsonl", ".parquet", ".csv")]
        existing = [m for m in matches if m.exists()]
        if not existing:
            raise FileNotFoundError(
                f"no {stem} file in {folder} (looked for {', '.join(m.name for m in matches)}): "
                f"run `samestream simulate {use_case}` or pass --events {kind}=PATH"
            )
        found.append(EventFile(kind, existing[0]))
    return found


def check_files(fs: FeatureSet, files: Sequence[EventFile]) -> None:
    """Fail before any work starts if a file is missing, of unknown format or kind."""
    if not files:
        raise ValueError("no event files to replay")
    for f in files:
        sources.check_source(f.path)
        if f.kind not in fs.schemas:
            raise ValueError(
                f"{f.path}: unknown event kind {f.kind!r} for the {fs.name} use case; "
                f"expected one of {sorted(fs.schemas)}"
            )


def read_payloads(path: Path) -> Iterator[bytes | dict[str, Any]]:
    """Raw payloads of one file in file order: JSON lines as bytes, CSV/Parquet rows as dicts."""
    for _, payload in sources.read_payloads(path):
        yield payload.rstrip(b"\r\n") if isinstance(payload, bytes) else payload


def load(
    fs: FeatureSet,
    files: Sequence[EventFile],
    advance: Callable[[int], None] | None = None,
    mapping: Mapping | None = None,
) -> list[Outgoing]:
    """Every event of every file (read through `mapping` where it maps the file's kind; a row's
    derived label is an event of its own kind) as a keyed message, in replay order; the feed
    with hourly watermarks."""
    check_files(fs, files)
    events: list[tuple[OrderKey, Outgoing]] = []
    feed: list[Outgoing] = []
    latest = read = 0
    sniff = _key_sniffer(fs)
    for f in files:
        last_time = 0
        for kind, _, payload in mapped_payloads(f.path, f.kind, mapping):
            read += 1
            is_feed = kind in fs.feed_kinds
            if isinstance(payload, bytes):
                payload = payload.rstrip(b"\r\n")
            try:
                event = fs.parse(kind, payload)
            except InvalidEvent:
                value = _raw_value(fs, kind, payload)
                message = Outgoing(last_time, sniff(payload), value, kind, is_feed, invalid=True)
                key = (last_time, fs.kind_order[kind], read)
            else:
                last_time = fs.event_time_ms(event)
                latest = max(latest, last_time)
                key = order_key(fs, kind, event, read)
                message_key = None if is_feed else fs.message_key(event).encode()
                message = Outgoing(last_time, message_key, _encode(event), kind, is_feed)
            if is_feed:
                feed.append(message)
            else:
                events.append((key, message))
            if advance is not None and read % 10_000 == 0:
                advance(10_000)
    if advance is not None:
        advance(read % 10_000)
    events.sort(key=lambda item: item[0])
    merged = heapq.merge((m for _, m in events), feed, key=lambda m: m.event_time_ms)
    if not fs.feed_kinds or not (feed or events):
        return list(merged)
    return [*_with_watermarks(merged, feed), _watermark(latest)]


def _watermark(ts_ms: int) -> Outgoing:
    return Outgoing(
        ts_ms,
        None,
        _encode({"type": WATERMARK, "ts": datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat()}),
        WATERMARK,
        True,
    )


def _with_watermarks(merged: Iterable[Outgoing], feed: Sequence[Outgoing]) -> Iterator[Outgoing]:
    """`merged` with a feed watermark at each hour its event time crosses, as a quiet live feed
    sends them: without one, no table day is final before the next label, and a paced replay's
    rows wait for it. A watermark at W goes out only when no feed message still to come is
    earlier than W, so it never makes a label late: the stream closes days exactly where the
    batch driver, which folds the whole feed first, would."""
    earliest_to_come = [0] * (len(feed) + 1)
    earliest_to_come[-1] = 2**63
    for i in range(len(feed) - 1, -1, -1):
        earliest_to_come[i] = min(feed[i].event_time_ms, earliest_to_come[i + 1])
    sent = 0
    boundary: int | None = None
    for message in merged:
        if boundary is None:
            boundary = (message.event_time_ms // WATERMARK_EVERY_MS + 1) * WATERMARK_EVERY_MS
        while message.event_time_ms >= boundary:
            if boundary <= earliest_to_come[sent]:
                yield _watermark(boundary)
            boundary += WATERMARK_EVERY_MS
        sent += message.feed
        yield message


def _key_sniffer(fs: FeatureSet) -> Callable[[bytes | dict[str, Any]], bytes | None]:
    """The raw key of a payload the FeatureSet rejects, where it can be read: keyed as a valid
    event would be, it reaches the partition (and the replica) its key's events are on."""
    field = fs.partition_key
    if field is None:
        return lambda payload: None
    decode = msgspec.json.Decoder(msgspec.defstruct("Key", [(field, str | None, None)])).decode

    def sniff(payload: bytes | dict[str, Any]) -> bytes | None:
        try:
            value = getattr(decode(payload), field) if isinstance(payload, bytes) else payload.get(field)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return value.encode() if isinstance(value, str) else None

    return sniff


def _raw_value(fs: FeatureSet, kind: str, payload: bytes | dict[str, Any]) -> bytes:
    """A rejected payload as published: the line itself, or the row, typed, as JSON tagged with its kind."""
    if isinstance(payload, bytes):
        return payload
    try:
        return _encode({"type": kind, **sources.typed_row(fs.schemas[kind], payload)})
    except (TypeError, msgspec.EncodeError):
        return repr(payload).encode()


def ensure_topic(bootstrap: str, topic: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Create `topic` with `partitions` partitions unless it exists (its partitions then stay)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def replay_producer(bootstrap: str, paced: bool) -> Producer:
    """An idempotent producer: no linger when paced (each event leaves when due), batches otherwise."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 0 if paced else 20,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def publish(
    bootstrap: str,
    topic: str,
    messages: Sequence[Outgoing],
    *,
    feed_topic: str | None = None,
    speed: float = 0.0,
    rate: float = 0.0,
    advance: Callable[[int], None] | None = None,
    producer: Producer | None = None,
) -> ReplayReport:
    """Publish `messages` in order, paced by event time (`speed` x real time) or `rate` per second;
    feed messages go to `feed_topic`, the others to `topic`.

    Both zero means as fast as the broker takes them. Delivery is idempotent (no duplicates on
    retries) and checked: a message the broker refused makes this raise after the flush. Pass a
    connected `producer` (see `replay_producer`) to reuse it across calls.
    """
    if speed < 0 or rate < 0:
        raise ValueError("speed and rate must be >= 0")
    if feed_topic is None and any(m.feed for m in messages):
        raise ValueError("these messages include a tables' feed: give its topic (feed_topic)")
    paced = speed > 0 or rate > 0
    producer = producer or replay_producer(bootstrap, paced)
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    started = time.perf_counter()
    first_time = messages[0].event_time_ms if messages else 0
    invalid = 0
    for i, message in enumerate(messages):
        if paced:
            due = i / rate if rate > 0 else (message.event_time_ms - first_time) / 1000.0 / speed
            wait = started + due - time.perf_counter()
            if wait > 0.001:
                time.sleep(wait)
        invalid += message.invalid
        headers = [("type", message.kind.encode())] if message.kind else None
        target = feed_topic if message.feed else topic
        while True:
            try:
                producer.produce(target, value=message.value, key=message.key, headers=headers, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        if advance is not None and (paced or i % 1_000 == 999):
            advance(1 if paced else 1_000)
    remaining = producer.flush(60.0)
    if advance is not None and not paced:
        advance(len(messages) % 1_000)
    if remaining:
        raise RuntimeError(f"{remaining} messages still unsent to {topic} after 60 s: is the broker up?")
    if failures:
        raise RuntimeError(f"{len(failures)} messages refused by the broker, first: {failures[0]}")
    return ReplayReport(topic, len(messages), invalid, time.perf_counter() - started)
