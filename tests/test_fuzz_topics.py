"""Hostile bytes on the events topic: the feature process answers each message as the batch driver does.

For every use case, hypothesis draws a batch of hostile messages (random bytes, invalid UTF-8,
deep nesting, valid events with one field replaced by a huge number, NaN, a wrong type, a
near-megabyte string or a time at the edge of the calendar). They are published between valid
events of the same use case; one feature process then reads the topic. Nothing may crash, every
message the batch driver rejects must be a dead letter with a reason, and the feature rows of
everything else must equal the batch driver's, in order.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.featureset import FeatureSet, InvalidEvent, LocalRunner
from serving.feature_process import FeatureProcess
from tests.live_fixtures import broker, live_settings, read_topic, unique_prefix  # noqa: F401
from tests.test_fuzz_fraud import VALID as FRAUD_VALID
from tests.test_fuzz_fraud import fresh_runner
from tests.test_fuzz_loan_store import TIMES, VALID, _hostile, build

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

LARGE = "x" * 900_000
"""Near the broker's default message limit (1 MB): larger messages never reach the topic."""
EXAMPLES = {
    "fraud": {"payment": FRAUD_VALID},
    "loan": VALID["loan"],
    "store": VALID["store"],
}


def featureset(use_case: str) -> FeatureSet:
    return fresh_runner().featureset if use_case == "fraud" else build(use_case)


def _json(kind: str, event: dict[str, Any]) -> bytes | None:
    try:
        return msgspec.json.encode({"type": kind, **event})
    except (OverflowError, TypeError, ValueError):
        return None


@st.composite
def hostile_message(draw: st.DrawFn, use_case: str) -> bytes:
    examples = EXAMPLES[use_case]
    kind = draw(st.sampled_from(sorted(examples)))
    valid = examples[kind]
    shape = draw(st.sampled_from(["bytes", "field", "nested", "utf8", "large"]))
    if shape == "bytes":
        return draw(st.binary(min_size=1, max_size=500))
    if shape == "nested":
        depth = draw(st.integers(min_value=1, max_value=50_000))
        return _json(kind, {**valid, sorted(valid)[0]: "P"}).replace(b'"P"', b"[" * depth + b"]" * depth)  # type: ignore[union-attr]
    if shape == "utf8":
        raw = _json(kind, valid)
        assert raw is not None
        position = draw(st.integers(min_value=0, max_value=len(raw)))
        return raw[:position] + b"\xff\xfe\xc3\x28" + raw[position:]
    name = draw(st.sampled_from(sorted(valid)))
    value = LARGE if shape == "large" else draw(_hostile(TIMES.get(use_case, TIMES["loan"])))
    raw = _json(kind, {**valid, name: value}) or b'{"type": "' + kind.encode() + b'", "unencodable": NaN}'
    return raw if len(raw) < len(LARGE) + 10_000 else _json(kind, {**valid, name: LARGE})  # type: ignore[return-value]


def _key(fs: FeatureSet, raw: bytes) -> bytes:
    """The key a producer gives the message: its event's key when it parses, else any."""
    try:
        return fs.message_key(fs.parse(None, raw)).encode()
    except InvalidEvent:
        return b"unparseable"


def _valid_stream(use_case: str) -> list[bytes]:
    return [raw for kind, event in EXAMPLES[use_case].items() if (raw := _json(kind, event)) is not None]


def check_topic(use_case: str, hostile: list[bytes]) -> None:
    fs = featureset(use_case)
    valid = _valid_stream(use_case)
    messages = [m for pair in zip(hostile, [*valid * len(hostile)][: len(hostile)], strict=True) for m in pair]
    settings_ = live_settings(unique_prefix(f"fuzz-{use_case}"), use_case, guarantee="at-least-once")
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": settings_.bootstrap, "message.max.bytes": 1_000_000})
    for raw in messages:
        producer.produce(settings_.topics.events, key=_key(fs, raw), value=raw)
        producer.poll(0)
    if fs.tables:  # no labels: the feed says so, so rows need not wait for it
        watermark = msgspec.json.encode({"type": "watermark", "ts": "9999-12-31T23:59:59.999Z"})
        producer.produce(settings_.topics.named(fs.feed), value=watermark)
    assert producer.flush(30) == 0

    counts = FeatureProcess(fs, settings_).run(idle_timeout=3, max_events=len(messages))

    runner = LocalRunner(featureset(use_case))
    batch = [runner.process(None, raw) for raw in messages]
    rejected = sum(1 for outcome in batch for _ in outcome.dead_letters)
    letters = [letter for _, letter in read_topic(settings_.topics.deadletters)]
    assert counts.events == len(messages)
    assert len(letters) == rejected == sum(counts.dead.values())
    assert all(letter["reason"] for letter in letters)
    rows = [row for _, row in read_topic(settings_.topics.features)]
    assert rows == [{**row, "featureset_version": fs.version} for outcome in batch for row in outcome.rows]


_topic_fuzz = settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@_topic_fuzz
@given(hostile=st.lists(hostile_message("fraud"), min_size=10, max_size=40))
def test_hostile_fraud_messages(hostile: list[bytes]) -> None:
    check_topic("fraud", hostile)


@_topic_fuzz
@given(hostile=st.lists(hostile_message("loan"), min_size=10, max_size=40))
def test_hostile_loan_messages(hostile: list[bytes]) -> None:
    check_topic("loan", hostile)


@_topic_fuzz
@given(hostile=st.lists(hostile_message("store"), min_size=10, max_size=40))
def test_hostile_store_messages(hostile: list[bytes]) -> None:
    check_topic("store", hostile)
