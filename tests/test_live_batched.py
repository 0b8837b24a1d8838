"""The shadow harness's batch reader: a batch's offsets are committed only once it was handled."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Message

from serving.batched import BatchConsumer
from tests.live_fixtures import (
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    produce,
    unique_prefix,
)

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("broker")]


def test_a_batch_whose_handler_fails_is_read_again_and_nothing_is_lost() -> None:
    settings = live_settings(unique_prefix("batched"), guarantee="at-least-once")
    topic = settings.topics.features
    produce(topic, ((f"k{i}", {"i": i}) for i in range(500)))

    def broken(messages: list[Message]) -> None:
        raise RuntimeError("handler bug")

    with pytest.raises(RuntimeError, match="handler bug"):
        BatchConsumer(settings, "batched", [topic], broken, every_s=0.1).run()

    seen: list[int] = []
    batches: list[int] = []

    def keep(messages: list[Message]) -> None:
        batches.append(len(messages))
        seen.extend(json.loads(m.value())["i"] for m in messages)

    BatchConsumer(settings, "batched", [topic], keep, every_s=0.1, idle_timeout=2.0).run()
    assert sorted(seen) == list(range(500)), "the failed batch was committed, or a message read twice"
    assert all(batches), "an empty batch was handed over"
    produce(topic, [("k500", {"i": 500})])
    seen.clear()
    BatchConsumer(settings, "batched", [topic], keep, every_s=0.1, idle_timeout=2.0).run()
    assert seen == [500], "a restarted reader resumes after the last committed batch"
