"""Access to the real local Kafka broker for tests marked ``@pytest.mark.kafka``.

Start the broker with ``bash kafka/kafka.sh up``. Environment:

- ``SAMESTREAM_KAFKA_BOOTSTRAP``: bootstrap servers (default ``127.0.0.1:9092``).
- ``SAMESTREAM_REQUIRE_KAFKA``: when set (to anything but ``""``/``0``/``false``/``no``), a broker
  that does not answer fails the test instead of skipping it (CI sets it).
"""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
CONNECT_TIMEOUT_S = 10.0

_probe_results: dict[str, str | None] = {}


def bootstrap() -> str:
    """Bootstrap servers of the test broker (``SAMESTREAM_KAFKA_BOOTSTRAP``)."""
    return os.environ.get("SAMESTREAM_KAFKA_BOOTSTRAP", "").strip() or DEFAULT_BOOTSTRAP


def kafka_required() -> bool:
    """True when ``SAMESTREAM_REQUIRE_KAFKA`` asks for failures instead of skips."""
    value = os.environ.get("SAMESTREAM_REQUIRE_KAFKA", "").strip().lower()
    return value not in ("", "0", "false", "no")


def _split_hosts(servers: str) -> list[tuple[str, int]]:
    hosts = []
    for item in servers.split(","):
        item = item.strip()
        if "://" in item:
            item = item.split("://", 1)[1]
        host, _, port = item.rpartition(":")
        hosts.append((host.strip("[]") or "127.0.0.1", int(port)))
    return hosts


def _probe(servers: str, timeout_s: float) -> str | None:
    """Return None when a Kafka broker answers a metadata request, else the reason it does not."""
    deadline = time.monotonic() + timeout_s
    try:
        hosts = _split_hosts(servers)
    except ValueError:
        return f"invalid SAMESTREAM_KAFKA_BOOTSTRAP {servers!r}"

    # TCP first: cheap, and quiet when nothing listens.
    last_error = "no address to try"
    while True:
        reachable = False
        for host, port in hosts:
            try:
                with socket.create_connection((host, port), timeout=1.0):
                    reachable = True
                    break
            except OSError as exc:
                last_error = f"{host}:{port}: {exc}"
        if reachable:
            break
        if time.monotonic() >= deadline:
            return f"nothing accepts connections at {servers} ({last_error})"
        time.sleep(0.25)

    # Then a real Kafka metadata round trip.
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    quiet = logging.getLogger("samestream.tests.kafka_probe")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    admin = AdminClient({"bootstrap.servers": servers, "logger": quiet})
    remaining = max(1.0, deadline - time.monotonic())
    try:
        metadata = admin.list_topics(timeout=remaining)
    except KafkaException as exc:
        return f"no Kafka metadata from {servers} within {timeout_s:.0f}s: {exc}"
    if not metadata.brokers:
        return f"the cluster at {servers} reports no brokers"
    return None


def require_broker() -> str:
    """Bootstrap servers of a broker that answers; otherwise skip (or fail when required).

    The probe runs once per test session (up to ~10 s); later calls reuse its result.
    """
    servers = bootstrap()
    if servers not in _probe_results:
        _probe_results[servers] = _probe(servers, CONNECT_TIMEOUT_S)
    error = _probe_results[servers]
    if error is not None:
        message = f"Kafka broker not available: {error}. Start it with: bash kafka/kafka.sh up"
        if kafka_required():
            pytest.fail(message + " (SAMESTREAM_REQUIRE_KAFKA is set)", pytrace=False)
        pytest.skip(message)
    return servers
