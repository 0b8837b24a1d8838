"""The same events through the batch driver and through Kafka give the same feature rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from typer.testing import CliRunner

from serving import produce
from serving.cli import app as cli_app
from serving.feature_process import FeatureProcess
from tests.live_fixtures import (
    SECRET,
    assert_no_personal_data,
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    personal_values,
    read_topic,
    simulation,
    unique_prefix,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

PERSONAL = ("customer_id", "card_number", "device_id", "ip", "cardholder_name", "email")


def _strings(value: Any) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return set()


def _table(db: Path) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM fraud_labels").fetchone() == (len(simulation().labels),)
        return con.execute(
            "SELECT payment_id, epoch_ms(event_time), amount_z, log_spend_30d, merchant_fraud_rate_30d, "
            "featureset_version FROM fraud_features ORDER BY payment_id"
        ).fetchall()
    finally:
        con.close()


def _table_of(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    columns = ("payment_id", "event_time", "amount_z", "log_spend_30d", "merchant_fraud_rate_30d", "featureset_version")
    return sorted(tuple(row[c] for c in columns) for row in rows)


def test_feature_topic_equals_batch_rows_row_for_row(tmp_path: Path) -> None:
    sim = simulation()
    fs = sim.featureset()
    settings = live_settings(unique_prefix("parity"), guarantee="exactly-once")
    replayed = CliRunner().invoke(
        cli_app,
        [
            "produce",
            "fraud",
            "--data-dir",
            str(sim.data_dir),
            "--secret",
            SECRET,
            "--topic-prefix",
            settings.prefix,
            *(f"--events={f.kind}={f.path}" for f in sim.files),
        ],
    )
    assert replayed.exit_code == 0, replayed.output
    events = len(sim.rows) + len(sim.labels)

    db = tmp_path / "stream.duckdb"
    counts = FeatureProcess(fs, settings, db_path=db).run(idle_timeout=60, max_events=events)

    stream = read_topic(settings.topics.features)
    assert len(stream) == len(sim.rows) == counts.rows
    mismatches = [(i, key) for i, ((key, row), batch) in enumerate(zip(stream, sim.rows, strict=True)) if row != batch]
    assert not mismatches, f"{len(mismatches)} rows differ, first {mismatches[0]}"
    assert [key for key, _ in stream] == [row["payment_id"] for row in sim.rows]
    assert sum(counts.dead.values()) == 0

    labels = read_topic(settings.topics.labels)
    assert {key: value["is_fraud"] for key, value in labels} == sim.labels

    assert _table(db) == _table_of(sim.rows)

    # Materialize from the topic: a new consumer group replays it from the earliest offset into
    # DuckDB only, with state of its own, and publishes nothing.
    replay_db = tmp_path / "replay.duckdb"
    replay = FeatureProcess(fs, settings, db_path=replay_db, role="materialize", publish=False)
    assert replay.run(idle_timeout=60, max_events=events).rows == len(sim.rows)
    assert _table(replay_db) == _table_of(sim.rows)
    assert len(read_topic(settings.topics.features)) == len(sim.rows)

    personal: set[str] = set()
    for f in sim.files:
        for payload in produce.read_payloads(f.path):
            event = msgspec.json.decode(payload)
            personal |= {str(event[k]) for k in PERSONAL if k in event}
    derived = set().union(*(_strings(value) for _, value in (*stream, *labels)))
    assert not personal & derived, f"personal data in a derived topic: {sorted(personal & derived)[:3]}"
    assert_no_personal_data(settings.prefix, personal_values(fs, sim.files))
