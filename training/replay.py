"""The batch driver: history replayed through a FeatureSet in event-time order.

Every event of every file is validated first; the valid ones are sorted by event time (ties
broken by the FeatureSet's kind order, then by input order) and run one by one through the
same stages the stream driver runs, with in-memory state. Sorting is what gives each key's
state the order the live stream gives it.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from features.featureset import DeadLetter, FeatureSet, InvalidEvent, LocalRunner, Outcome
from training.sources import check_source, read_payloads


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

    def add(self, time_ms: int, rank: int, read: int, event: msgspec.Struct) -> None:
        self._memory.append((time_ms, rank, read, event))
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
                kind = self._kind_index[type(event).__struct_config__.tag]
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
    """Validated history ready to run: events in order, dead letters aside."""

    events: SortedEvents
    dead_letters: list[DeadLetter]
    read: int


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


def load(featureset: FeatureSet, sources: Sequence[Source], advance: Callable[[int], None] | None = None) -> Replay:
    """Read and validate every source; return the valid events in replay order."""
    check(featureset, sources)
    events = SortedEvents(featureset)
    dead: list[DeadLetter] = []
    read = 0
    order = featureset.kind_order
    for source in sources:
        rank = order[source.kind]
        source_name = str(source.path.name)
        for position, payload in read_payloads(source.path):
            read += 1
            try:
                event = featureset.parse(source.kind, payload)
            except InvalidEvent as exc:
                dead.append(featureset.dead_letter(source_name, position, source.kind, exc.reason, payload))
            else:
                events.add(featureset.event_time_ms(event), rank, read, event)
            if advance is not None and read % 10_000 == 0:
                advance(10_000)
    if advance is not None:
        advance(read % 10_000)
    return Replay(events=events, dead_letters=dead, read=read)


def run(featureset: FeatureSet, events: SortedEvents) -> Iterator[Outcome]:
    """Run the events through a fresh in-memory state; a dead letter of a stage says
    `replay`, `event <n>`: the n-th event read, counting over the files in the order given."""
    runner = LocalRunner(featureset)
    for read, event in events.numbered():
        yield runner.run(event, "replay", f"event {read}")
