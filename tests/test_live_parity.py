"""The same events through the batch driver and through Kafka give the same feature rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from serving import produce
from serving.feature_process import FeatureProcess

try:
    from live_fixtures import live_settings, read_topic, simulation, unique_prefix
except ModuleNotFoundError:  # tests/ collected as a package
    from tests.live_fixtures import live_settings, read_topic, simulation, unique_prefix

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PERSONAL = ("customer_id", "card_number", "device_id", "ip", "cardholder_name", "email")


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


def test_feature_topic_equals_batch_rows_row_for_row(tmp_path: Path) -> None:
    sim = simulation()
    fs = sim.featureset()
    settings = live_settings(unique_prefix("parity"), guarantee="exactly-once")
    messages = produce.load(fs, sim.files)
    produce.ensure_topic(settings.bootstrap, settings.topics.events, partitions=1)
    produce.publish(settings.bootstrap, settings.topics.events, messages)

    db = tmp_path / "stream.duckdb"
    counts = FeatureProcess(fs, settings, db_path=db).run(idle_timeout=60, max_events=len(messages))

    stream = read_topic(settings.topics.features)
    assert len(stream) == len(sim.rows) == counts.rows
    mismatches = [(i, key) for i, ((key, row), batch) in enumerate(zip(stream, sim.rows, strict=True)) if row != batch]
    assert not mismatches, f"{len(mismatches)} rows differ, first {mismatches[0]}"
    assert [key for key, _ in stream] == [row["payment_id"] for row in sim.rows]
    assert sum(counts.dead.values()) == 0

    labels = read_topic(settings.topics.labels)
    assert {key: value["is_fraud"] for key, value in labels} == sim.labels

    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM fraud_features").fetchone() == (len(sim.rows),)
        assert con.execute("SELECT count(*) FROM fraud_labels").fetchone() == (len(sim.labels),)
        assert con.execute("SELECT DISTINCT featureset_version FROM fraud_features").fetchall() == [(fs.version,)]
    finally:
        con.close()

    personal: set[str] = set()
    for f in sim.files:
        for payload in produce.read_payloads(f.path):
            event = msgspec.json.decode(payload)
            personal |= {str(event[k]) for k in PERSONAL if k in event}
    derived = set().union(*(_strings(value) for _, value in (*stream, *labels)))
    assert not personal & derived, f"personal data in a derived topic: {sorted(personal & derived)[:3]}"
