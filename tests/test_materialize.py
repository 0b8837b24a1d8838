"""Materialize into a real DuckDB file: idempotent, resumable, faulty rows dead-lettered."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import pytest

from features.usecases import build_featureset
from training.materialize import materialize
from training.replay import Source
from training.simulators.fraud import simulate_fraud

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):
    return simulate_fraud(tmp_path_factory.mktemp("sim"), n_payments=4_000, days=20, seed=5, fmt="jsonl")


def sources(sim, payments: Path | None = None) -> list[Source]:
    return [Source("payment", payments or sim.payments), Source("label", sim.labels)]


def counts(db: Path) -> tuple[int, int, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return tuple(  # type: ignore[return-value]
            con.execute(f"SELECT count(*) FROM fraud_{t}").fetchone()[0] for t in ("features", "labels", "dead_letters")
        )
    finally:
        con.close()


def test_rerun_adds_nothing_and_forced_replay_adds_nothing(sim, tmp_path: Path) -> None:
    fs = build_featureset("fraud", sim.merchants.parent, "s")
    db = tmp_path / "f.duckdb"
    first = materialize(fs, sources(sim), db)
    assert (first.rows_written, first.labels_written, first.dead_letters) == (4_000, 4_000, 0)
    assert counts(db) == (4_000, 4_000, 0)
    again = materialize(fs, sources(sim), db)
    assert again.skipped and counts(db) == (4_000, 4_000, 0)
    forced = materialize(fs, sources(sim), db, force=True)
    assert not forced.skipped and forced.rows_written == 0 and counts(db) == (4_000, 4_000, 0)


def test_interrupted_run_is_completed_without_duplicates(sim, tmp_path: Path) -> None:
    fs = build_featureset("fraud", sim.merchants.parent, "s")
    db = tmp_path / "f.duckdb"
    materialize(fs, sources(sim), db)
    con = duckdb.connect(str(db))
    reference = con.execute("SELECT * FROM fraud_features ORDER BY payment_id").fetchall()
    # what a crash half-way leaves behind: part of the rows, and no completed run
    con.execute("DELETE FROM fraud_features WHERE event_time > (SELECT median(event_time) FROM fraud_features)")
    con.execute("UPDATE materializations SET completed = false")
    con.close()
    resumed = materialize(fs, sources(sim), db)
    assert not resumed.skipped and 0 < resumed.rows_written < 4_000
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT * FROM fraud_features ORDER BY payment_id").fetchall() == reference
    con.close()


def test_faulty_rows_become_dead_letters_and_valid_rows_are_untouched(sim, tmp_path: Path) -> None:
    fs = build_featureset("fraud", sim.merchants.parent, "s")
    clean_db, faulty_db = tmp_path / "clean.duckdb", tmp_path / "faulty.duckdb"
    materialize(fs, sources(sim), clean_db)

    lines = sim.payments.read_text().splitlines()
    good = json.loads(lines[10])
    bad = [
        "{this is not json",
        json.dumps({**good, "payment_id": "bad-amount", "amount": "twelve"}),
        json.dumps({**good, "payment_id": "bad-negative", "amount": -3.0}),
        json.dumps({**good, "payment_id": "bad-merchant", "merchant_id": "M-NOPE"}),
        json.dumps({k: v for k, v in good.items() if k != "ts"} | {"payment_id": "bad-missing"}),
        json.dumps({**good, "payment_id": "bad-lat", "lat": 991.0}),
        json.dumps({**good, "payment_id": "bad-time", "ts": "yesterday"}),
    ]
    faulty = tmp_path / "payments.jsonl"
    faulty.write_text("\n".join(lines[:100] + bad + lines[100:]) + "\n")
    report = materialize(fs, sources(sim, faulty), faulty_db)
    assert report.dead_letters == len(bad)
    assert counts(faulty_db) == (4_000, 4_000, len(bad))

    con = duckdb.connect(str(faulty_db), read_only=True)
    reasons = dict(con.execute("SELECT position, reason FROM fraud_dead_letters").fetchall())
    assert reasons["payments.jsonl:101"].startswith("schema violation: JSON is malformed")
    assert "Expected `float`, got `str` - at `$.amount`" in reasons["payments.jsonl:102"]
    assert "Expected `float` >= 0.0" in reasons["payments.jsonl:103"]
    assert "merchant_id 'M-NOPE'" in reasons["payments.jsonl:104"]
    assert "missing required field `ts`" in reasons["payments.jsonl:105"]
    assert "<= 90.0" in reasons["payments.jsonl:106"]
    assert "datetime" in reasons["payments.jsonl:107"]
    con.execute(f"ATTACH '{clean_db}' AS clean (READ_ONLY)")
    differing = con.execute(
        "SELECT count(*) FROM (SELECT * EXCLUDE (featureset_version) FROM fraud_features "
        "EXCEPT SELECT * EXCLUDE (featureset_version) FROM clean.fraud_features)"
    ).fetchone()
    assert differing == (0,)
    con.close()


def test_csv_history_gives_the_same_rows_as_jsonl(sim, tmp_path: Path) -> None:
    """Bring-your-own history: the documented schema as CSV works like JSONL."""
    fs = build_featureset("fraud", sim.merchants.parent, "s")
    rows = [json.loads(line) for line in sim.payments.read_text().splitlines()]
    path = tmp_path / "payments.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    materialize(fs, sources(sim), tmp_path / "a.duckdb")
    materialize(fs, sources(sim, path), tmp_path / "b.duckdb")
    con = duckdb.connect(str(tmp_path / "a.duckdb"), read_only=True)
    con.execute(f"ATTACH '{tmp_path / 'b.duckdb'}' AS b (READ_ONLY)")
    assert con.execute(
        "SELECT count(*) FROM (SELECT * FROM fraud_features EXCEPT SELECT * FROM b.fraud_features)"
    ).fetchone() == (0,)
    con.close()


def test_unknown_kind_and_missing_file_fail_before_work(sim, tmp_path: Path) -> None:
    fs = build_featureset("fraud", sim.merchants.parent, "s")
    with pytest.raises(ValueError, match="unknown event kind 'refund'"):
        materialize(fs, [Source("refund", sim.payments)], tmp_path / "x.duckdb")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        materialize(fs, [Source("payment", tmp_path / "nope.jsonl")], tmp_path / "x.duckdb")


def test_materialize_with_two_workers_writes_the_rows_of_one(tmp_path: Path) -> None:
    """Workers split the events by the hash of their key, each key's events whole: the same rows."""
    sim = simulate_fraud(tmp_path / "fraud", n_payments=4_000, days=21, seed=5, fmt="jsonl")
    fs = build_featureset("fraud", tmp_path / "fraud", "workers-secret")
    sources = [Source("payment", sim.payments), Source("label", sim.labels)]
    tables = []
    for workers in (1, 2):
        db = tmp_path / f"w{workers}.duckdb"
        report = materialize(fs, sources, db, workers=workers)
        assert (report.rows_written, report.labels_written, report.workers) == (4_000, 4_000, workers)
        con = duckdb.connect(str(db), read_only=True)
        tables.append(
            [
                con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("fraud_features", "fraud_labels", "fraud_dead_letters")
            ]
        )
        con.close()
    assert tables[0] == tables[1]


def test_the_command_reports_rejections_fails_past_the_threshold_and_force_replaces_dead_letters(
    sim, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    lines = sim.payments.read_text().splitlines()[:50]
    bad = tmp_path / "payments.jsonl"
    broken = [json.dumps(json.loads(line) | {"amount": -1.0, "currency": 7}) for line in lines[:10]]
    bad.write_text("\n".join(broken + lines[10:]) + "\n")
    db = tmp_path / "cli.duckdb"
    (tmp_path / "fraud").mkdir()
    (tmp_path / "fraud" / "merchants.csv").write_bytes(sim.merchants.read_bytes())
    common = ["materialize", "fraud", "--data-dir", str(tmp_path), "--db", str(db)]
    common += [f"--events=payment={bad}", f"--events=label={sim.labels}"]
    runner = CliRunner()
    first = runner.invoke(app, common)
    assert first.exit_code == 0, first.output
    assert "dead letters by reason" in first.output and "schema violation" in first.output
    con = duckdb.connect(str(db), read_only=True)
    [(reason,)] = con.execute("SELECT DISTINCT reason FROM fraud_dead_letters").fetchall()
    con.close()
    assert reason.endswith("- at `$.amount`; Expected `str | null`, got `int` - at `$.currency`"), (
        "every problem in one reason"
    )
    strict = runner.invoke(app, [*common, "--force", "--max-rejected", "0.001"])
    assert strict.exit_code == 1 and "more than --max-rejected 0.001" in strict.output

    bad.write_text("\n".join(lines) + "\n")  # the input fixed: its dead letters must go
    fixed = runner.invoke(app, [*common, "--force"])
    assert fixed.exit_code == 0, fixed.output
    assert counts(db)[2] == 0
