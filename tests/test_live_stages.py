"""The feature process is generic over FeatureSets: any number of keyed stages, any partitions.

A three-stage FeatureSet (keys a, then b, then c; each stage counts its key's events so far)
exercises the in-process re-key of a single-partition topic, the `group_by` repartition topic
and the explicit repartition topic of a third stage.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, ClassVar

import msgspec
import pytest

from features.depersonalize import Policy
from features.featureset import FeatureSet, LocalRunner, Record, Stage
from features.state import State
from serving import produce
from serving.feature_process import FeatureProcess
from tests.live_fixtures import (
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    read_topic,
    unique_prefix,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]


class Tick(msgspec.Struct, tag="tick", tag_field="type"):
    tick_id: str
    t: int
    a: str
    b: str
    c: str


def _counter(column: str) -> Any:
    def process(record: Record, state: State) -> list[Record]:
        seen = state.get("n", 0) + 1
        state.set("n", seen)
        return [{**record, f"n_{column}": seen}]

    return process


class ChainFeatureSet(FeatureSet):
    name: ClassVar[str] = "chain"
    schemas: ClassVar[dict[str, type[msgspec.Struct]]] = {"tick": Tick}
    kind_order: ClassVar[dict[str, int]] = {"tick": 0}
    policies: ClassVar[dict[str, Policy]] = {f: Policy.KEEP for f in ("tick_id", "t", "a", "b", "c")}
    columns: ClassVar[dict[str, str]] = {"tick_id": "str", "t": "ts_ms", "n_a": "float", "n_b": "float", "n_c": "float"}
    feature_names: ClassVar[tuple[str, ...]] = ("n_a", "n_b", "n_c")
    label_columns: ClassVar[dict[str, str]] = {}
    entity_column: ClassVar[str] = "c"
    row_id: ClassVar[str] = "tick_id"

    def event_time_ms(self, event: msgspec.Struct) -> int:
        return event.t  # type: ignore[attr-defined, no-any-return]

    def depersonalize(self, event: msgspec.Struct) -> Record:
        return msgspec.structs.asdict(event)

    @property
    def stages(self) -> tuple[Stage, ...]:
        return tuple(Stage(k, lambda r, k=k: str(r[k]), _counter(k)) for k in ("a", "b", "c"))  # type: ignore[misc]


def _ticks(n: int) -> list[Tick]:
    rng = random.Random(5)
    return [
        Tick(f"k{i}", 1_000 * i, f"a{rng.randrange(4)}", f"b{rng.randrange(6)}", f"c{rng.randrange(3)}")
        for i in range(n)
    ]


@pytest.mark.parametrize("partitions", [1, 2])
def test_three_keyed_stages_run_in_the_stream_as_in_the_batch_driver(partitions: int) -> None:
    fs = ChainFeatureSet()
    ticks = _ticks(300)
    settings = live_settings(unique_prefix(f"chain{partitions}"), "chain", guarantee="at-least-once")
    produce.ensure_topic(settings.bootstrap, settings.topics.events, partitions)
    messages = [produce.Outgoing(t.t, t.a.encode(), msgspec.json.encode(t)) for t in ticks]
    produce.publish(settings.bootstrap, settings.topics.events, messages)

    counts = FeatureProcess(fs, settings).run(idle_timeout=3)
    rows = {row["tick_id"]: row for _, row in read_topic(settings.topics.features)}

    runner = LocalRunner(fs)
    expected = {row["tick_id"]: row for t in ticks for row in runner.run(t).rows}
    assert counts.rows == len(rows) == len(ticks) and sum(counts.dead.values()) == 0
    if partitions == 1:
        assert rows == {k: {**v, "featureset_version": fs.version} for k, v in expected.items()}
    else:
        # Across partitions only each key's own order is kept: the first stage is exact, and
        # every later stage still counts each of its keys' events exactly once.
        assert {k: r["n_a"] for k, r in rows.items()} == {k: r["n_a"] for k, r in expected.items()}
        for column in ("b", "c"):
            assert Counter(r[column] for r in rows.values()) == Counter(
                {
                    key: max(r[f"n_{column}"] for r in rows.values() if r[column] == key)
                    for key in {r[column] for r in rows.values()}
                }
            )


class FragileChainFeatureSet(ChainFeatureSet):
    """Stage b fails on one of its keys, as a FeatureSet bug would."""

    name: ClassVar[str] = "fragile"

    @property
    def stages(self) -> tuple[Stage, ...]:
        a, b, c = super().stages
        count = b.process

        def fragile(record: Record, state: State) -> list[Record]:
            if record["b"] == "b0":
                raise ValueError(f"cannot count {record['b']}")
            return count(record, state)

        return (a, Stage(b.name, b.key, fragile), c)


def test_a_record_a_stage_fails_on_is_dead_lettered_alike_in_stream_and_batch() -> None:
    fs = FragileChainFeatureSet()
    ticks = _ticks(200)
    settings = live_settings(unique_prefix("fragile"), "fragile", guarantee="at-least-once")
    produce.ensure_topic(settings.bootstrap, settings.topics.events, 1)
    produce.publish(
        settings.bootstrap,
        settings.topics.events,
        [produce.Outgoing(t.t, t.a.encode(), msgspec.json.encode(t)) for t in ticks],
    )

    counts = FeatureProcess(fs, settings).run(idle_timeout=3)
    rows = {row["tick_id"]: row for _, row in read_topic(settings.topics.features)}
    letters = [letter for _, letter in read_topic(settings.topics.deadletters)]

    runner = LocalRunner(fs)
    outcomes = [runner.run(t) for t in ticks]
    expected = {row["tick_id"]: row for outcome in outcomes for row in outcome.rows}
    batch_letters = [letter for outcome in outcomes for letter in outcome.dead_letters]
    broken = sum(t.b == "b0" for t in ticks)
    assert broken and len(batch_letters) == len(letters) == broken == sum(counts.dead.values())
    assert (
        {letter["reason"] for letter in letters}
        == {letter.reason for letter in batch_letters}
        == {"processing error in stage b: ValueError: cannot count b0"}
    )
    assert rows == {k: {**v, "featureset_version": fs.version} for k, v in expected.items()}
    assert len(rows) == len(ticks) - broken
