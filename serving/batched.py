"""Reading topics in batches, for the shadow harness's processes that may wait: challengers and the collector.

The champion's path (feature process, scorer) handles one message at a time as a quixstreams
Application, to answer each as soon as it arrives. The shadow processes answer nobody: each
reads what has arrived in one call of the Kafka client quixstreams is built on
(`confluent_kafka.Consumer.consume`), hands it over as one batch, then commits the batch's
offsets. That costs a few microseconds a message where a per-message pipeline costs tens, which
on a machine the champion shares is CPU (and so tail latency) the champion keeps.

At-least-once: offsets are committed only after `handle` returned, and a batch in hand when
partitions are revoked is handled and committed first. A record handled twice after a crash is
harmless where it lands (DuckDB keyed by row, model and version).

The poison-message rule: a batch whose handler raises (anything but a Kafka failure) is handled
again one message at a time, and a message that still raises is handed to `on_poison` and
committed with the rest, so no offset fails twice and the stream goes on.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from serving import produce
from serving.settings import BACKGROUND_BATCH_MS, SESSION_TIMEOUT_MS, LiveSettings, OffsetReset

log = logging.getLogger("samestream.batched")
POLL_MESSAGES = 5_000
POLL_TIMEOUT_S = 0.5


class BatchConsumer:
    """Consumes `topics` in consumer group `<prefix><use case>-<role>` and calls `handle` per batch.

    Parameters
    ----------
    settings:
        Broker, prefix, instance name.
    role:
        Names the consumer group.
    topics:
        Topics to read; created (one partition) if missing, so a reader may start first.
    handle:
        Called with each batch of messages (never empty), before their offsets are committed.
    every_s:
        Seconds a batch gathers messages: fewer, larger batches cost less per message.
    idle_timeout:
        > 0: `run` returns once nothing has arrived for that long and `may_stop()` is true.
    on_poison:
        Called with a message `handle` raised on by itself, and the exception; it is skipped.
    """

    def __init__(
        self,
        settings: LiveSettings,
        role: str,
        topics: Sequence[str],
        handle: Callable[[list[Message]], None],
        *,
        offset_reset: OffsetReset = "earliest",
        every_s: float = 1.0,
        idle_timeout: float = 0.0,
        may_stop: Callable[[], bool] = lambda: True,
        on_poison: Callable[[Message, Exception], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = tuple(topics)
        self.handle = handle
        self.every_s = every_s
        self.idle_timeout = idle_timeout
        self.may_stop = may_stop
        self.on_poison = on_poison or _log_poison
        group = settings.topics.group(role)
        self._config = {
            "bootstrap.servers": settings.bootstrap,
            "group.id": group,
            "client.id": f"{group}-{settings.instance}",
            "enable.auto.commit": False,
            "auto.offset.reset": offset_reset,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "fetch.min.bytes": 256 * 1024,
            "fetch.wait.max.ms": BACKGROUND_BATCH_MS,
        }
        self._pending: list[Message] = []
        self._last_input: float | None = None
        self._stopping = threading.Event()

    def stop(self, *_: object) -> None:
        """Handle what has arrived, commit it and return from `run`."""
        self._stopping.set()

    def run(self) -> None:
        """Read, handle and commit until stopped (SIGTERM/SIGINT, `stop()`) or idle."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self._consume()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def _consume(self) -> None:
        for topic in self.topics:
            produce.ensure_topic(self.settings.bootstrap, topic, 1)
        consumer = Consumer(self._config)
        consumer.subscribe(list(self.topics), on_assign=self._assigned, on_revoke=lambda c, _: self._flush(c))
        gathered_since = time.monotonic()
        try:
            while not self._stopping.is_set():
                messages = consumer.consume(POLL_MESSAGES, POLL_TIMEOUT_S)
                now = time.monotonic()
                for message in messages:
                    if message.error() is None:
                        self._pending.append(message)
                    else:
                        _check(message.error())
                if messages:
                    self._last_input = now
                if now - gathered_since >= self.every_s:
                    self._flush(consumer)
                    gathered_since = now
                if self._idle(now) and self.may_stop():
                    break
            self._flush(consumer)
        finally:
            consumer.close()

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._last_input = time.monotonic()

    def _idle(self, now: float) -> bool:
        """Nothing has arrived for `idle_timeout` since partitions were assigned: a group still
        waiting for a dead member's session to expire is not idle."""
        return self.idle_timeout > 0 and self._last_input is not None and now - self._last_input >= self.idle_timeout

    def _flush(self, consumer: Consumer) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            self.handle(batch)
        except KafkaException:
            raise
        except Exception as exc:
            log.warning(
                "a batch of %d failed (%s: %s); handling it message by message", len(batch), type(exc).__name__, exc
            )
            for message in batch:
                try:
                    self.handle([message])
                except KafkaException:
                    raise
                except Exception as exc:
                    self.on_poison(message, exc)
        offsets: dict[tuple[str, int], int] = {}
        for message in batch:
            offsets[(message.topic(), message.partition())] = message.offset() + 1
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)


def _log_poison(message: Message, exc: Exception) -> None:
    log.error(
        "skipping %s:%d:%d, which the handler fails on: %s", message.topic(), message.partition(), message.offset(), exc
    )


def _check(error: KafkaError) -> None:
    """Raise on a fatal consumer error (the harness restarts the process); log the others,
    which the client retries by itself."""
    if error.fatal():
        raise KafkaException(error)
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer: %s", error)
