"""The shadow harness's batch reader: a batch's offsets are committed only once it was handled,
and a message its handler fails on by itself is set aside, never read again."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import KafkaError, KafkaException, Message

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

    def broker_gone(messages: list[Message]) -> None:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    with pytest.raises(KafkaException):
        BatchConsumer(settings, "batched", [topic], broker_gone, every_s=0.1).run()

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


def test_a_message_the_handler_fails_on_is_set_aside_and_the_rest_are_handled() -> None:
    settings = live_settings(unique_prefix("poison"), guarantee="at-least-once")
    topic = settings.topics.features
    produce(topic, [*((f"k{i}", {"i": i}) for i in range(50)), ("null", None), ("k50", {"i": 50})])
    seen: list[int] = []
    poisoned: list[tuple[int, str]] = []

    def fragile(messages: list[Message]) -> None:
        values = [json.loads(m.value())["i"] for m in messages]  # a NULL value raises TypeError
        seen.extend(values)

    def aside(message: Message, exc: Exception) -> None:
        poisoned.append((message.offset(), type(exc).__name__))

    BatchConsumer(settings, "poison", [topic], fragile, every_s=0.1, idle_timeout=2.0, on_poison=aside).run()
    assert sorted(set(seen)) == list(range(51)) and poisoned == [(50, "TypeError")]
    seen.clear()
    BatchConsumer(settings, "poison", [topic], fragile, every_s=0.1, idle_timeout=2.0, on_poison=aside).run()
    assert seen == [] and len(poisoned) == 1, "the poisoned offset was committed: it is not read again"
