"""The batch driver: history replayed through a FeatureSet in event-time order.

Every event of every file is validated first; the valid ones are sorted by event time (ties
broken by the FeatureSet's kind order, then by input order) and run one by one through the
same stages the stream driver runs, with in-memory state. Sorting is what gives each key's
state the order the live stream gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
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


@dataclass
class Replay:
    """Validated history ready to run: events in order, dead letters aside."""

    events: list[msgspec.Struct]
    dead_letters: list[DeadLetter]
    read: int


def sources_in(files: Mapping[str, str], folder: Path) -> list[Source]:
    """The event file of every kind in `folder` (kind -> file stem), whichever format is there."""
    found = []
    for kind, stem in files.items():
        matches = [folder / f"{stem}{ext}" for ext in (".jsonl", ".parquet", ".csv") if (folder / f"{stem}{ext}").exists()]
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
    keyed: list[tuple[int, int, int, msgspec.Struct]] = []
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
                keyed.append((featureset.event_time_ms(event), rank, read, event))
            if advance is not None and read % 10_000 == 0:
                advance(10_000)
    if advance is not None:
        advance(read % 10_000)
    keyed.sort(key=lambda item: item[:3])
    return Replay(events=[item[3] for item in keyed], dead_letters=dead, read=read)


def run(featureset: FeatureSet, events: Sequence[msgspec.Struct]) -> Iterator[Outcome]:
    """Run events, in the given order, through a fresh in-memory state."""
    runner = LocalRunner(featureset)
    for event in events:
        yield runner.run(event)
