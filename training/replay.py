"""The batch driver: history replayed through a FeatureSet in the replay order of `features.order`.

Every event of every file is validated first. The tables' feed (fraud: the labels) is folded
first, in feed order, so every table is complete; then the other events, sorted by event time
(ties broken by the FeatureSet's kind order, then by input order), run one by one through the
same stages the stream driver runs, with in-memory state, reading the tables as of their time.
Sorting is what gives each key's state the order the live stream gives it.

The events of a replay can be split into shards (`Shard`): the events whose Kafka key hashes to
one, as Kafka's default partitioner assigns keys to partitions, each key's events whole, so
shards run in separate processes, each after the same folded feed, and together make exactly
the rows of one replay.

History larger than memory is sorted externally: every `SPILL_EVENTS` validated events are
sorted and written to a temporary file (each event as the JSON the stream carries, so nothing
about it changes on the way), and replaying merges those runs lazily: memory holds one run
while validating and one event per run while replaying.
"""

from __future__ import annotations

import heapq
import shutil
import struct
import tempfile
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from features.featureset import DeadLetter, FeatureSet, InvalidEvent, LocalRunner, Outcome
from features.mapping import Mapping as InputMapping
from features.mapping import mapped_payloads
from features.order import OrderKey, order_key
from training.sources import check_source


@dataclass(frozen=True)
class Source:
    """One event file and the kind of event it holds (`payment`, `label`, ...)."""

    kind: str
    path: Path


SPILL_EVENTS = 2_000_000
"""Validated events held in memory before a sorted run of them is written to disk."""
_FRAME = struct.Struct("<I")


class SortedEvents:
    """Validated events in replay order: a sorted list in memory, sorted runs on disk beyond it.

    Sized and iterable like the list it replaces; every iteration merges the runs afresh.
    Run files are removed when this object is garbage-collected.
    """

    def __init__(self, featureset: FeatureSet) -> None:
        self._kinds = tuple(featureset.schemas)
        self._kind_index = {kind: i for i, kind in enumerate(self._kinds)}
        self._decoders = [msgspec.json.Decoder(featureset.schemas[k]) for k in self._kinds]
        self._encode_event = msgspec.json.Encoder().encode
        self._encode = msgspec.msgpack.Encoder().encode
        self._memory: list[tuple[int, int, int, msgspec.Struct]] = []
        self._runs: list[Path] = []
        self._directory: Path | None = None
        self._size = 0

    def add(self, key: OrderKey, event: msgspec.Struct) -> None:
        self._memory.append((*key, event))
        self._size += 1
        if len(self._memory) >= SPILL_EVENTS:
            self._spill()

    def _spill(self) -> None:
        if self._directory is None:
            self._directory = Path(tempfile.mkdtemp(prefix="samestream-replay-"))
            weakref.finalize(self, shutil.rmtree, self._directory, True)
        self._memory.sort(key=lambda item: item[:3])
        path = self._directory / f"run-{len(self._runs):05d}"
        with path.open("wb") as handle:
            for time_ms, rank, read, event in self._memory:
                kind = self._kind_index[str(type(event).__struct_config__.tag)]
                frame = self._encode((time_ms, rank, read, kind, self._encode_event(event)))
                handle.write(_FRAME.pack(len(frame)))
                handle.write(frame)
        self._runs.append(path)
        self._memory = []

    def _read(self, path: Path) -> Iterator[tuple[int, int, int, msgspec.Struct]]:
        decode = msgspec.msgpack.Decoder(tuple[int, int, int, int, bytes]).decode
        with path.open("rb", buffering=1 << 20) as handle:
            while header := handle.read(_FRAME.size):
                time_ms, rank, read, kind, payload = decode(handle.read(_FRAME.unpack(header)[0]))
                yield time_ms, rank, read, self._decoders[kind].decode(payload)

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[msgspec.Struct]:
        return (event for _, event in self.numbered())

    def numbered(self) -> Iterator[tuple[int, msgspec.Struct]]:
        """(read number, event) in replay order; the read number counts events as they were read."""
        self._memory.sort(key=lambda item: item[:3])
        if not self._runs:
            return (item[2:] for item in self._memory)
        streams: list[Iterable[tuple[int, int, int, msgspec.Struct]]] = [self._read(p) for p in self._runs]
        streams.append(iter(self._memory))
        return (item[2:] for item in heapq.merge(*streams, key=lambda item: item[:3]))


@dataclass
class Replay:
    """Validated history ready to run: the feed and the events in order, dead letters aside."""

    feed: SortedEvents
    events: SortedEvents
    dead_letters: list[DeadLetter]
    read: int


@dataclass(frozen=True)
class Shard:
    """The `index`-th of `count` shards of a replay's events, split by the hash of their Kafka key."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    def holds(self, key: str | None) -> bool:
        """Whether an event keyed `key` is this shard's: CRC32 modulo the count, librdkafka's
        default partitioner, so shard i holds what partition i of a topic holds. An event
        without a readable key (it will be a dead letter) is the first shard's."""
        if self.count == 1:
            return True
        if key is None:
            return self.index == 0
        return zlib.crc32(key.encode()) % self.count == self.index


Part = Literal["all", "feed", "events"]


def sources_in(files: Mapping[str, str], folder: Path) -> list[Source]:
    """The event file of every kind in `folder` (kind -> file stem), whichever format is there."""
    found = []
    for kind, stem in files.items():
        matches = [
            folder / f"{stem}{ext}" for ext in (".jsonl", ".parquet", ".csv") if (folder / f"{stem}{ext}").exists()
        ]
        if not matches:
            raise FileNotFoundError(f"no {stem}.jsonl, .parquet or .csv in {folder}")
        found.append(Source(kind, matches[0]))
    return found


def check(featureset: FeatureSet, sources: Sequence[Source]) -> None:
    """Fail before any work if a file is missing, unreadable, or of a kind the use case lacks."""
    if not sources:
        raise ValueError("no event files given")
    for source in sources:
        check_source(source.path)
        if source.kind not in featureset.schemas:
            raise ValueError(
                f"{source.path}: unknown event kind {source.kind!r} for the {featureset.name} "
                f"use case; expected one of {sorted(featureset.schemas)}"
            )


def load(
    featureset: FeatureSet,
    sources: Sequence[Source],
    advance: Callable[[int], None] | None = None,
    shard: Shard = Shard(),
    part: Part = "all",
    mapping: InputMapping | None = None,
) -> Replay:
    """Read and validate the sources of `part` (the feed's, the events', or all), through
    `mapping` where it maps their kind; return the valid events in replay order, only those of
    `shard` among the events. A mapped row's derived label counts as an event of its own kind."""
    check(featureset, sources)
    feed, events = SortedEvents(featureset), SortedEvents(featureset)
    dead: list[DeadLetter] = []
    read = 0
    sniff = _key_sniffer(featureset) if shard.count > 1 else None
    feed_kinds = featureset.feed_kinds
    for source in sources:
        source_name = str(source.path.name)
        for kind, position, payload in mapped_payloads(source.path, source.kind, mapping):
            read += 1
            if advance is not None and read % 10_000 == 0:
                advance(10_000)
            is_feed = kind in feed_kinds
            if (part == "feed" and not is_feed) or (part == "events" and is_feed):
                continue
            if sniff is not None and not is_feed and not shard.holds(sniff(payload)):
                continue
            try:
                event = featureset.parse(kind, payload)
            except InvalidEvent as exc:
                if is_feed or sniff is not None or shard.holds(None):
                    dead.append(featureset.dead_letter(source_name, position, kind, exc.reason, payload))
                continue
            if is_feed:
                feed.add(order_key(featureset, kind, event, read), event)
            elif sniff is not None or shard.holds(featureset.message_key(event)):
                events.add(order_key(featureset, kind, event, read), event)
    if advance is not None:
        advance(read % 10_000)
    return Replay(feed=feed, events=events, dead_letters=dead, read=read)


def _key_sniffer(featureset: FeatureSet) -> Callable[[bytes | dict[str, Any]], str | None] | None:
    """Reads an event's Kafka key without validating the event, so a shard parses only its own
    events; None where the key needs the whole event (no raw partition key)."""
    field = featureset.partition_key
    if field is None:
        return None
    decode = msgspec.json.Decoder(msgspec.defstruct("Key", [(field, str | None, None)])).decode

    def sniff(payload: bytes | dict[str, Any]) -> str | None:
        try:
            value = getattr(decode(payload), field) if isinstance(payload, bytes) else payload.get(field)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        return value if isinstance(value, str) else None

    return sniff


def run(featureset: FeatureSet, history: Replay, runner: LocalRunner | None = None) -> Iterator[Outcome]:
    """Fold the feed, then run the events, through `runner` (fresh in-memory state by default);
    a dead letter of a stage says `replay`, `event <n>`: the n-th event read, counting over the
    files in the order given."""
    runner = runner or LocalRunner(featureset)
    for read, event in history.feed.numbered():
        yield runner.run(event, "replay", f"event {read}")
    for read, event in history.events.numbered():
        yield runner.run(event, "replay", f"event {read}")
