"""The local Kafka broker answers: topics, produce, independent read-back (kcat), transactions."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from kafka_helpers import kafka_required, require_broker

pytestmark = pytest.mark.kafka

MESSAGES = [(f"key-{i}", f"value-{i}") for i in range(3)]
TIMEOUT_S = 30.0


def _unique(prefix: str) -> str:
    return f"samestream-test-{prefix}-{uuid.uuid4().hex[:12]}"


def _create_topic(admin: AdminClient, topic: str) -> None:
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=TIMEOUT_S)


def _delete_topic(admin: AdminClient, topic: str) -> None:
    with contextlib.suppress(Exception):  # cleanup only; a leftover test topic is harmless
        admin.delete_topics([topic])[topic].result(timeout=TIMEOUT_S)


def _produce(producer: Producer, messages: list[tuple[str, str]], topic: str) -> None:
    # Inside a transaction, a failed delivery makes commit_transaction() raise.
    for key, value in messages:
        producer.produce(topic, key=key.encode(), value=value.encode())


def _read_to_end(consumer: Consumer, expected: int) -> list[tuple[str, str]]:
    """Consume the single partition (enable.partition.eof) up to its end, once `expected`
    messages arrived. An earlier end of partition is not final: transaction markers are written
    after commit/abort returns, so a read_committed consumer can briefly see an older stable end."""
    received: list[tuple[str, str]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error() is not None:
            if msg.error().code() == KafkaError._PARTITION_EOF:
                if len(received) >= expected:
                    return received
                continue
            raise AssertionError(f"consumer error: {msg.error()}")
        received.append((msg.key().decode(), msg.value().decode()))
    raise AssertionError(f"fewer than {expected} messages within {TIMEOUT_S}s: {received}")


@pytest.fixture(scope="module")
def servers() -> str:
    return require_broker()


@pytest.fixture(scope="module")
def admin(servers: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": servers})


@pytest.fixture(scope="module")
def produced_topic(servers: str, admin: AdminClient) -> Iterator[str]:
    """A new topic holding MESSAGES, written by a plain (idempotent) producer."""
    topic = _unique("plain")
    _create_topic(admin, topic)
    producer = Producer({"bootstrap.servers": servers, "enable.idempotence": True})
    delivered: list[tuple[str, str]] = []
    errors: list[str] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            delivered.append((msg.key().decode(), msg.value().decode()))

    for key, value in MESSAGES:
        producer.produce(topic, key=key.encode(), value=value.encode(), on_delivery=on_delivery)
    assert producer.flush(TIMEOUT_S) == 0, "messages still queued after flush"
    assert errors == []
    assert delivered == MESSAGES
    yield topic
    _delete_topic(admin, topic)


def test_topic_exists_in_metadata(servers: str, admin: AdminClient, produced_topic: str) -> None:
    metadata = admin.list_topics(topic=produced_topic, timeout=TIMEOUT_S)
    assert len(metadata.brokers) == 1
    topic = metadata.topics[produced_topic]
    assert topic.error is None
    assert list(topic.partitions) == [0]


def test_read_back_with_confluent_consumer(servers: str, produced_topic: str) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": servers,
            "group.id": _unique("reader"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(produced_topic, 0, OFFSET_BEGINNING)])
        assert _read_to_end(consumer, len(MESSAGES)) == MESSAGES
    finally:
        consumer.close()


def test_read_back_with_kcat(servers: str, produced_topic: str) -> None:
    kcat = shutil.which("kcat")
    if kcat is None:
        if kafka_required():
            pytest.fail("kcat is not installed, and SAMESTREAM_REQUIRE_KAFKA is set")
        pytest.skip("kcat is not installed (apt-get install kcat)")
    result = subprocess.run(
        [kcat, "-C", "-b", servers, "-t", produced_topic, "-e", "-o", "beginning", "-f", "%k %s\n"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kcat failed ({result.returncode}): {result.stderr}"
    assert result.stdout.splitlines() == [f"{key} {value}" for key, value in MESSAGES]


def test_transactional_commit_is_read_committed(servers: str, admin: AdminClient) -> None:
    topic = _unique("txn")
    _create_topic(admin, topic)
    try:
        producer = Producer(
            {
                "bootstrap.servers": servers,
                "transactional.id": _unique("txn-producer"),
                "enable.idempotence": True,
            }
        )
        producer.init_transactions(TIMEOUT_S)

        producer.begin_transaction()
        _produce(producer, [("aborted", "must-not-be-seen")], topic)
        producer.flush(TIMEOUT_S)
        producer.abort_transaction(TIMEOUT_S)

        producer.begin_transaction()
        _produce(producer, MESSAGES, topic)
        producer.commit_transaction(TIMEOUT_S)

        consumer = Consumer(
            {
                "bootstrap.servers": servers,
                "group.id": _unique("txn-reader"),
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            consumer.subscribe([topic])
            assert _read_to_end(consumer, len(MESSAGES)) == MESSAGES
        finally:
            consumer.close()
    finally:
        _delete_topic(admin, topic)
