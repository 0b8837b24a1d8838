"""Bad messages become dead letters with reasons, masked payloads and their origin; the stream goes on."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from features.featureset import LocalRunner
from serving import produce
from serving.feature_process import FeatureProcess
from serving.registry import ModelWatcher, Registry
from serving.scorer import ScoringProcess
from tests.live_fixtures import (
    MODEL,
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    model_store,
    produce_rows,
    read_topic,
    simulation,
    unique_prefix,
)
from tests.live_fixtures import produce as publish

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

CARD = "4539578763621486"
EMAIL = "anna.svensson@example.se"
NAME = "Anna Svensson"


def _payment(**overrides: Any) -> dict[str, Any]:
    event = {
        "type": "payment",
        "payment_id": "bad-1",
        "ts": "2026-01-03T10:00:00Z",
        "customer_id": "C-SECRET-1",
        "card_number": CARD,
        "merchant_id": "M00001",
        "amount": 20.0,
        "currency": "EUR",
        "lat": 59.33,
        "lon": 18.06,
        "channel": "pos",
        "device_id": "dev-secret",
        "ip": "81.2.69.160",
        "cardholder_name": NAME,
        "email": EMAIL,
        "reference": f"paid by {EMAIL}",
    }
    event.update(overrides)
    return event


def test_bad_events_are_dead_lettered_exactly_and_the_stream_goes_on() -> None:
    sim = simulation()
    fs = sim.featureset()
    settings = live_settings(unique_prefix("dead"), guarantee="exactly-once")
    replayed = produce.load(fs, sim.files)
    good = [m for m in replayed if not m.feed][:60]
    feed = [m for m in replayed if m.feed]
    label = next(m for m in feed if m.kind == "label")
    encode = msgspec.json.encode
    key = b"C-SECRET-1"
    bad: list[tuple[bytes | None, bytes | None, str]] = [
        (
            key,
            b'{"type": "payment", "payment_id": "bad-1", "card_number": "' + CARD.encode() + b'", ',
            "schema violation",
        ),
        (key, encode(_payment(amount="twenty")), "schema violation"),
        (key, encode({k: v for k, v in _payment().items() if k != "amount"}), "schema violation"),
        (key, encode(_payment(amount=-5.0)), "schema violation"),
        (key, encode(_payment(lat=123.0)), "schema violation"),
        (key, encode(_payment(merchant_id="M99999")), "unknown reference"),
        (key, encode(_payment(currency="XXX")), "unknown reference"),
        (key, encode({**_payment(), "type": "refund"}), "schema violation"),
        (b"M00001", encode(_payment()), "wrong key"),
        (None, b"\xff\xfe\x00garbage", "schema violation"),
        (key, None, "empty message"),
        (None, None, "empty message"),
        (key, b"", "empty message"),
        (b"M00001", label.value, "wrong topic"),
        (None, encode(_payment()), "wrong key"),
    ]
    messages: list[tuple[bytes | None, bytes]] = []
    bad_offsets: list[int] = []
    pending = list(bad)
    for i, message in enumerate(good):
        messages.append((message.key, message.value))
        if i % 4 == 3:
            bad_key, value, _ = pending.pop(0)
            bad_offsets.append(len(messages))
            messages.append((bad_key, value))
    assert not pending
    publish(settings.topics.events, messages)
    publish(settings.topics.named(fs.feed), [(m.key, m.value) for m in feed])

    counts = FeatureProcess(fs, settings).run(idle_timeout=60, max_events=len(messages))

    letters = read_topic(settings.topics.deadletters)
    assert len(letters) == len(bad) == sum(counts.dead.values())
    assert [v["reason"].split(":")[0] for _, v in letters] == [reason for _, _, reason in bad]
    assert [v["offset"] for _, v in letters] == bad_offsets
    readable = [
        "unknown",
        *["payment"] * 6,
        "unknown",
        "payment",
        "unknown",
        "unknown",
        "unknown",
        "unknown",
        "label",
        "payment",
    ]
    assert [v["kind"] for _, v in letters] == readable
    for key, letter in letters:
        assert letter["process"] == "features" and letter["topic"] == settings.topics.events
        assert key == f"{letter['topic']}:{letter['partition']}:{letter['offset']}"
        assert letter["position"] == f"{letter['partition']}:{letter['offset']}"
        text = msgspec.json.encode(letter).decode()
        for secret in (CARD, EMAIL, NAME, "C-SECRET-1", "dev-secret"):
            assert secret not in text, f"{secret!r} leaked into a dead letter: {letter['reason']}"

    runner = LocalRunner(fs)
    for m in feed:
        runner.process(None, m.value)
    expected_rows = [row for m in good for row in runner.process(None, m.value).rows]
    rows = [row for _, row in read_topic(settings.topics.features)]
    assert [r["payment_id"] for r in rows] == [r["payment_id"] for r in expected_rows]
    assert counts.events == len(messages)


def test_unscorable_feature_rows_are_dead_lettered_and_scoring_goes_on() -> None:
    sim = simulation()
    fs = sim.featureset()
    store = model_store()
    settings = live_settings(unique_prefix("dead-score"), guarantee="at-least-once")
    rows = sim.rows[:20]
    lacking = {k: v for k, v in rows[3].items() if k != "amount_z"} | {"payment_id": "lacking"}
    textual = rows[4] | {"payment_id": "textual", "log_amount": "12"}
    produce_rows(settings.topics.features, rows[:10])
    publish(settings.topics.features, [("lacking", lacking), ("garbage", b"{not json"), ("textual", textual)])
    produce_rows(settings.topics.features, rows[10:])

    watcher = ModelWatcher(Registry(store.tracking_uri), MODEL, store.versions["lr"], tuple(fs.columns))
    watcher.start()
    counts = ScoringProcess(fs, settings, watcher).run(idle_timeout=60, max_rows=23)

    decisions = read_topic(settings.topics.decisions)
    assert [v["payment_id"] for _, v in decisions] == [r["payment_id"] for r in rows]
    letters = [v for _, v in read_topic(settings.topics.deadletters)]
    assert counts.dead == len(letters) == 3
    assert all(v["process"] == "scorer" and v["reason"].startswith("schema violation") for v in letters)
    assert "amount_z" in letters[0]["reason"] and "log_amount" in letters[2]["reason"]
