"""Keep a live process running through Kafka failures that end a quixstreams Application.

Some failures are final for one Kafka client but not for the process: a static group member
fenced after the broker restarted (librdkafka treats `FENCED_INSTANCE_ID` as fatal), a
transaction that could not commit while the broker was away, a broker unreachable past the
client's timeouts. An Application that raised cannot be run again, so `run_supervised` builds
a new one and resumes from the last committed offsets: under exactly-once the failed
Application's open transaction is aborted (the new producer has the same transactional id and
fences it) and its outputs are produced again, so nothing is lost or doubled; under
at-least-once the last commit interval is replayed, as after any crash. The local state is
recovered from its changelog as after any restart.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.serialization import SerializationError
from quixstreams import Application
from quixstreams.checkpointing.exceptions import CheckpointProducerTimeout
from quixstreams.exceptions import PartitionAssignmentError
from quixstreams.kafka.exceptions import BaseKafkaException, KafkaBrokerUnavailableError

from serving.poison import PoisonList

log = logging.getLogger("samestream.supervise")


class RetryLater(RuntimeError):
    """A run cannot go on now but a new one later can (an input it waits for is late)."""


RECOVERABLE: tuple[type[BaseException], ...] = (
    RetryLater,
    BaseKafkaException,
    KafkaException,
    KafkaBrokerUnavailableError,
    CheckpointProducerTimeout,
    PartitionAssignmentError,
)
"""Failures of the Kafka clients (or of state recovery from Kafka) a new Application can outlive."""
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


def run_supervised(
    make_app: Callable[[], Application],
    idle_timeout: float,
    name: str,
    poison: PoisonList | None = None,
) -> None:
    """Run Applications built by `make_app` until one stops normally (SIGINT/SIGTERM, `stop()`,
    idle timeout); after a recoverable Kafka failure wait (1 s, doubling up to 30 s) and run a new
    one. Any other exception is a message's fault when `poison` knows which message was being
    processed: it is noted there (the new run dead-letters it) and a new one starts at once;
    otherwise it propagates."""
    backoff = FIRST_BACKOFF_S
    while True:
        try:
            make_app().run(timeout=idle_timeout, collect=False)
            return
        except SerializationError as exc:  # a Kafka exception by type, a message's fault in fact
            if poison is None or not poison.crashed(exc):
                raise
            log.warning("%s: a message could not be written; a new client starts and dead-letters it", name)
            continue
        except RECOVERABLE as exc:
            log.warning("%s: Kafka failure, a new client starts in %.0f s: %s", name, backoff, exc)
        except Exception as exc:
            if poison is None or not poison.crashed(exc):
                raise
            log.warning("%s: a message crashed the run; a new client starts and dead-letters it", name)
            continue
        if _stopped_while_waiting(backoff):
            return
        backoff = min(backoff * 2, MAX_BACKOFF_S)


def _stopped_while_waiting(seconds: float) -> bool:
    """Wait between Applications; True if SIGINT/SIGTERM came meanwhile, as it would have ended
    the Application."""
    stopping = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stopping.wait(seconds)
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return stopping.wait(seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
