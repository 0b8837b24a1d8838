"""No personal value planted in the events reaches DuckDB, MLflow (store and artifacts) or logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import CANARIES, REFERENCE_CANARIES, Pipeline

pytestmark = pytest.mark.slow

NEEDLES = [v.encode() for v in (*CANARIES.values(), *REFERENCE_CANARIES)] + [
    b"Quennell",
    b"Zabriskie",
    b"zabriskie-mail",
]


def leaks(blob: bytes) -> list[bytes]:
    lowered = blob.lower()
    return [n for n in NEEDLES if n.lower() in lowered]


def test_duckdb_values_hold_no_personal_data(fraud_pipeline: Pipeline) -> None:
    """Every string cell of every table is checked (the file itself is compressed)."""
    con = duckdb.connect(str(fraud_pipeline.db), read_only=True)
    tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
    assert "fraud_features" in tables
    for table in tables:
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND data_type = 'VARCHAR'",
                [table],
            ).fetchall()
        ]
        for column in columns:
            blob = "\n".join(v for (v,) in con.execute(f'SELECT DISTINCT "{column}" FROM {table}').fetchall() if v)
            assert leaks(blob.encode()) == [], (table, column)
    planted = con.execute(
        "SELECT count(*) FROM fraud_features WHERE reference_redacted LIKE '%<IBAN_CODE>%'"
    ).fetchone()
    assert planted is not None and planted[0] >= 20
    con.close()


def test_duckdb_file_bytes_hold_no_personal_data(fraud_pipeline: Pipeline) -> None:
    assert leaks(fraud_pipeline.db.read_bytes()) == []


def test_mlflow_store_and_artifacts_hold_no_personal_data(fraud_pipeline: Pipeline) -> None:
    store = Path(fraud_pipeline.tracking_uri.removeprefix("sqlite:///"))
    files = [store, *(p for p in fraud_pipeline.artifacts.rglob("*") if p.is_file())]
    assert any(p.suffix == ".png" for p in files) and any(p.name == "MLmodel" for p in files)
    for path in files:
        assert leaks(path.read_bytes()) == [], path


def test_logs_hold_no_personal_data(fraud_pipeline: Pipeline) -> None:
    log = fraud_pipeline.data_dir.parent / "pipeline.log"
    assert log.exists()
    assert leaks(log.read_bytes()) == []


def test_cli_output_holds_no_personal_data(fraud_pipeline: Pipeline, tmp_path: Path) -> None:
    """The command line, dead letters included, prints nothing personal."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(
            {"payment_id": "x1", "customer_id": CANARIES["customer_id"], "cardholder_name": CANARIES["cardholder_name"]}
            | {"amount": "NaN!"}
        )
        + "\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "samestream_cli",
            "materialize",
            "fraud",
            "--data-dir",
            str(fraud_pipeline.data_dir),
            "--db",
            str(tmp_path / "x.duckdb"),
            "--events",
            f"payment={bad}",
        ],
        capture_output=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1, result.stderr.decode()[-2000:]  # every event rejected: a failed run
    assert b"1 dead letters" in result.stderr and b"dead letters by reason" in result.stderr
    assert leaks(result.stdout + result.stderr) == []
    con = duckdb.connect(str(tmp_path / "x.duckdb"), read_only=True)
    [(reason, payload)] = con.execute("SELECT reason, payload FROM fraud_dead_letters").fetchall()
    assert "Expected `float`, got `str` - at `$.amount`" in reason
    assert leaks(payload.encode()) == []
