"""Attacks on the live path: NULL and empty messages, repeats, personal data in free text, a
message that crashes the process, and invalid file lines replayed by `samestream produce`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest

from features.featureset import LocalRunner, Record, Stage
from features.state import State
from serving import produce
from serving.feature_process import FeatureProcess
from serving.registry import ModelWatcher, Registry
from serving.scorer import ScoringProcess
from tests.live_fixtures import (
    MODEL,
    assert_no_personal_data,
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    model_store,
    personal_values,
    read_topic,
    simulation,
    unique_prefix,
)
from tests.live_fixtures import produce as publish
from tests.test_live_stages import ChainFeatureSet, Tick, _ticks

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

CANARY_NAME = "Zebulon Quartermaine"
CANARY_EMAIL = "zebulon.q@canary-mail.test"
CANARY_REFERENCE = "call +46 70 123 45 67, thanks Zebulon, ZEBULON QUARTERMAINE, someone@canary-mail.test"
CANARY_TEXT = ("+46 70 123 45 67", "Zebulon", "ZEBULON", "QUARTERMAINE", "someone@canary-mail.test", CANARY_EMAIL)


def _repeated_customer(payments: list[produce.Outgoing]) -> tuple[int, int]:
    """Positions of a payment and the next payment of the same customer."""
    first: dict[bytes | None, int] = {}
    for i, m in enumerate(payments):
        if m.key in first:
            return first[m.key], i
        first[m.key] = i
    raise AssertionError("no customer pays twice")


def test_nulls_repeats_and_canaries_on_every_input_of_the_feature_process_and_the_scorer(tmp_path: Path) -> None:
    sim = simulation()
    fs = sim.featureset()
    settings = live_settings(unique_prefix("hostile"), guarantee="exactly-once")
    replayed = produce.load(fs, sim.files)
    payments = [m for m in replayed if not m.feed][:300]
    feed = [m for m in replayed if m.feed]
    repeated, following = _repeated_customer(payments)
    canary = json.loads(payments[5].value) | {
        "payment_id": "canary-1",
        "cardholder_name": CANARY_NAME,
        "email": CANARY_EMAIL,
        "reference": CANARY_REFERENCE,
    }
    events: list[tuple[bytes | None, bytes | None]] = []
    for i, m in enumerate(payments):
        events.append((m.key, m.value))
        if i == repeated:
            events += [(m.key, m.value), (m.key, m.value)]  # the same payment three times
        if i == 10:
            events += [(m.key, None), (None, None), (m.key, b""), (None, m.value), (m.key, b"   ")]
            events.append((payments[5].key, msgspec.json.encode(canary)))
    publish(settings.topics.events, events)
    feed_topic = settings.topics.named(fs.feed)
    publish(feed_topic, [(None, None), (b"k", b""), *((m.key, m.value) for m in feed)])

    counts = FeatureProcess(fs, settings).run(idle_timeout=15)  # both topics read to their end

    rows = read_topic(settings.topics.features)
    by_id = Counter(key for key, _ in rows)
    assert max(by_id.values()) == 1, "a repeated payment made a second row"
    assert set(by_id) == {json.loads(m.value)["payment_id"] for m in payments} | {"canary-1"}
    expected = {r["payment_id"]: r for r in sim.rows}
    got = {key: row for key, row in rows}
    for m in (payments[repeated], payments[following]):
        pid = json.loads(m.value)["payment_id"]
        assert got[pid] == expected[pid], "the repeats changed the customer's features"
    assert counts.duplicates == 2
    letters = [v for _, v in read_topic(settings.topics.deadletters)]
    empties = [v for v in letters if v["reason"].startswith("empty message")]
    assert len(empties) == 6 and {v["topic"] for v in empties} == {settings.topics.events, feed_topic}
    assert any(v["reason"].startswith("wrong key: the message has a NULL key") for v in letters)

    store = model_store()
    publish(settings.topics.features, [(b"x", None), (None, b""), (None, b"[1]")])
    watcher = ModelWatcher(Registry(store.tracking_uri), MODEL, store.versions["lr"], tuple(fs.columns))
    watcher.start()
    scored = ScoringProcess(fs, settings, watcher).run(idle_timeout=20, max_rows=len(rows) + 3)
    decisions = Counter(key for key, _ in read_topic(settings.topics.decisions))
    assert set(decisions) == set(by_id) and max(decisions.values()) == 1
    assert scored.dead == 3

    personal = personal_values(fs, sim.files) | {CANARY_NAME, CANARY_EMAIL, *CANARY_TEXT}
    assert_no_personal_data(settings.prefix, personal)


class CrashingChainFeatureSet(ChainFeatureSet):
    """A stage bug its driver cannot catch: one key's row holds a value JSON cannot write."""

    name: ClassVar[str] = "crashing"

    @property
    def stages(self) -> tuple[Stage, ...]:
        a, b, c = super().stages

        def unwritable(record: Record, state: State) -> list[Record]:
            rows = c.process(record, state)
            return [{**row, "n_c": object()} if record["c"] == "c1" and record["t"] == 5_000 else row for row in rows]

        return (a, b, Stage(c.name, c.key, unwritable))


def test_a_message_that_crashes_the_process_is_dead_lettered_once_and_the_stream_goes_on() -> None:
    fs = CrashingChainFeatureSet()
    ticks = [Tick(t.tick_id, t.t, t.a, t.b, "c1" if t.t == 5_000 else t.c) for t in _ticks(60)]
    settings = live_settings(unique_prefix("crash"), "crashing", guarantee="exactly-once")
    produce.ensure_topic(settings.bootstrap, settings.topics.events, 1)
    produce.publish(
        settings.bootstrap,
        settings.topics.events,
        [produce.Outgoing(t.t, t.a.encode(), msgspec.json.encode(t)) for t in ticks],
    )
    FeatureProcess(fs, settings).run(idle_timeout=8)

    letters = [v for _, v in read_topic(settings.topics.deadletters)]
    assert len(letters) == 1 and "crashed the process" in letters[0]["reason"]
    rows = {key for key, _ in read_topic(settings.topics.features)}
    assert rows == {t.tick_id for t in ticks} - {"k5"}


def test_invalid_lines_replayed_by_produce_get_the_reasons_the_batch_driver_gives(tmp_path: Path) -> None:
    sim = simulation()
    fs = sim.featureset()
    payments_file, labels_file = (f.path for f in sim.files)
    lines = payments_file.read_bytes().splitlines()[:20]
    bad: list[dict[str, Any]] = [
        json.loads(lines[0]) | {"amount": -5.0},
        json.loads(lines[1]) | {"merchant_id": "M-NOWHERE"},
        {k: v for k, v in json.loads(lines[2]).items() if k not in ("amount", "currency")} | {"lat": 123.0},
    ]
    path = tmp_path / "payments.jsonl"
    path.write_bytes(b"\n".join([*lines[3:], *(json.dumps(b).encode() for b in bad)]) + b"\n")
    settings = live_settings(unique_prefix("reasons"), guarantee="at-least-once")
    messages = produce.load(fs, [produce.EventFile("payment", path), produce.EventFile("label", labels_file)])
    produce.ensure_topic(settings.bootstrap, settings.topics.events, 1)
    produce.publish(settings.bootstrap, settings.topics.events, messages, feed_topic=settings.topics.named(fs.feed))
    FeatureProcess(fs, settings).run(idle_timeout=10)

    runner = LocalRunner(fs)
    batch = sorted(runner.process("payment", json.dumps(b).encode()).dead_letters[0].reason for b in bad)
    live = sorted(v["reason"] for _, v in read_topic(settings.topics.deadletters))
    assert live == batch
    assert any(";" in reason for reason in live), "every problem of an event in one reason"
