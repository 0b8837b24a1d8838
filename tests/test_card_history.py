"""A card history in its owner's column names through the commands, with no conversion script.

The file has only ids, naive Stockholm times, integer customer and terminal ids, amounts (some
0.00) and a 0/1 fraud flag; `cards.toml` maps it. `materialize --mapping`, `train` and `score`
run on it as they are; the live path (`produce --mapping` and `features`) makes the rows the
batch made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import mlflow
import pytest
from typer.testing import CliRunner

from features.featureset import FeatureSet
from features.fields import read_record
from features.fraud.featureset import GROUPS
from features.mapping import Mapping
from features.usecases import build_featureset
from samestream_cli import app
from tests.card_history import write_card_history
from training import replay
from training.datasets import labelled_rows
from training.replay import Source

pytestmark = pytest.mark.slow
SECRET = "card-history-secret"
ABSENT = {c for g in GROUPS for c in (*g.features, *g.columns)}
"""No optional field is in the file and no merchant reference is given: every group is off."""


@dataclass(frozen=True)
class Cards:
    root: Path
    data_dir: Path
    db: Path
    mapping: Path
    output: str


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> Cards:
    root = tmp_path_factory.mktemp("cards")
    mapping = write_card_history(root)
    data_dir, db = root / "data", root / "data" / "samestream.duckdb"
    result = CliRunner().invoke(
        app,
        ["materialize", "fraud", "--data-dir", str(data_dir), "--db", str(db), "--secret", SECRET]
        + ["--mapping", str(mapping)],
    )
    assert result.exit_code == 0, result.output
    return Cards(root, data_dir, db, mapping, _text(result.output))


def _text(output: str) -> str:
    """A command's output as one line, without the lines and boxes of the terminal."""
    return " ".join(output.replace("│", " ").split())


def _fs(cards: Cards) -> FeatureSet:
    return build_featureset("fraud", cards.data_dir / "fraud", SECRET)


def test_materialize_maps_the_file_and_builds_the_featureset_for_its_fields(cards: Cards) -> None:
    assert "12,000 events" in cards.output and "6,000 feature rows" in cards.output
    assert "6,000 labels, 0 dead letters" in cards.output
    record = read_record(cards.data_dir / "fraud")
    assert record is not None and record.fields == () and record.references == {}
    fs = _fs(cards)
    assert fs.enabled == ()
    con = duckdb.connect(str(cards.db), read_only=True)
    try:
        table = {row[0] for row in con.execute("DESCRIBE fraud_features").fetchall()}
        zero = con.execute("SELECT count(*) FROM fraud_features WHERE amount_eur = 0").fetchone()
        frame = labelled_rows(con, fs, datetime(2025, 1, 1), datetime(2027, 1, 1), None)
    finally:
        con.close()
    assert table == {*fs.columns, "featureset_version"} and not ABSENT & table
    assert zero is not None and zero[0] == 62  # every 97th payment authorizes 0.00
    assert not ABSENT & set(frame.columns) and len(frame) == 6_000
    assert frame["label"].sum() > 20


def test_the_same_inputs_are_not_materialized_twice_and_another_mapping_is_another_input(cards: Cards) -> None:
    common = ["materialize", "fraud", "--data-dir", str(cards.data_dir), "--db", str(cards.db), "--secret", SECRET]
    again = CliRunner().invoke(app, [*common, "--mapping", str(cards.mapping)])
    assert again.exit_code == 0 and "already materialized" in _text(again.output)
    other = cards.root / "other.toml"
    other.write_text(cards.mapping.read_text().replace('delay = "7d"', 'delay = "8d"'))
    assert Mapping.load(other).digest != Mapping.load(cards.mapping).digest
    moved = CliRunner().invoke(app, [*common, "--mapping", str(other), "--db", str(cards.root / "other.duckdb")])
    assert moved.exit_code == 0 and "already materialized" not in moved.output


def test_the_mapping_options_are_the_toml_file(cards: Cards) -> None:
    options = ["--timezone", "Europe/Stockholm", "--drop", "TX_TIME_SECONDS", "--drop", "TX_TIME_DAYS"]
    for field, cast in (("ts", "time"), ("customer_id", "str"), ("merchant_id", "str"), ("amount", "float")):
        options += ["--cast", f"{field}={cast}"]
    for field, column in (("payment_id", "TRANSACTION_ID"), ("ts", "TX_DATETIME"), ("customer_id", "CUSTOMER_ID")):
        options += ["--rename", f"{field}={column}"]
    options += ["--rename", "merchant_id=TERMINAL_ID", "--rename", "amount=TX_AMOUNT"]
    options += ["--label-from", "TX_FRAUD", "--label-delay", "7d"]
    options += ["--label-field", "payment_id=payment_id", "--label-field", "merchant_id=merchant_id"]
    result = CliRunner().invoke(
        app,
        ["materialize", "fraud", "--data-dir", str(cards.data_dir), "--db", str(cards.db), "--secret", SECRET]
        + ["--events", f"payment={cards.root / 'transactions.csv'}", *options],
    )
    assert result.exit_code == 0, result.output
    assert "already materialized" in _text(result.output)  # the same files through the same mapping


def test_a_mapping_that_does_not_fit_the_schema_fails_before_a_row_is_read(cards: Cards) -> None:
    bad = cards.root / "bad.toml"
    bad.write_text(cards.mapping.read_text().replace('amount = "TX_AMOUNT"', 'amount_eur = "TX_AMOUNT"'))
    result = CliRunner().invoke(
        app,
        ["materialize", "fraud", "--data-dir", str(cards.root / "bad"), "--db", str(cards.root / "bad.duckdb")]
        + ["--mapping", str(bad)],
    )
    assert result.exit_code == 2 and "rename target 'amount_eur' is not a field of the schema" in _text(result.output)
    assert not (cards.root / "bad.duckdb").exists()


def test_train_and_score_the_card_history_through_the_commands(cards: Cards) -> None:
    tracking = f"sqlite:///{cards.root / 'mlflow.db'}"
    common = ["--data-dir", str(cards.data_dir), "--tracking-uri", tracking, "--secret", SECRET]
    trained = CliRunner().invoke(
        app, ["train", "fraud", *common, "--db", str(cards.db), "--candidate", "logistic_regression"]
    )
    assert trained.exit_code == 0, trained.output
    fs = _fs(cards)
    mlflow.set_tracking_uri(tracking)
    model = mlflow.pyfunc.load_model("models:/fraud-detector@champion")
    inputs = model.metadata.get_input_schema().input_names()
    assert inputs == list(fs.feature_names) and not ABSENT & set(inputs)
    out = cards.root / "scores.parquet"
    scored = CliRunner().invoke(
        app, ["score", "fraud", *common, "--mapping", str(cards.mapping), "--out", str(out), "--from", "2026-02-15"]
    )
    assert scored.exit_code == 0, scored.output
    assert "0 dead letters" in _text(scored.output)
    import pandas as pd

    scores = pd.read_parquet(out)
    assert len(scores) > 1_000 and scores["score"].between(0, 1).all()


@pytest.mark.kafka
def test_produce_with_the_mapping_and_the_feature_process_make_the_batch_rows(cards: Cards) -> None:
    from tests.live_fixtures import cli, read_raw, read_topic, running, scratch_dir, unique_prefix, wait_for

    fs = _fs(cards)
    con = duckdb.connect(str(cards.db), read_only=True)
    try:
        stored = {r[0] for r in con.execute("SELECT payment_id FROM fraud_features").fetchall()}
    finally:
        con.close()
    mapping = Mapping.load(cards.mapping)
    batch: dict[str, dict[str, Any]] = {}
    sources = [Source(kind, path) for kind, path in mapping.files.items()]
    for outcome in replay.run(fs, replay.load(fs, sources, mapping=mapping)):
        batch.update({str(row["payment_id"]): {**row, "featureset_version": fs.version} for row in outcome.rows})
    assert set(batch) == stored  # what materialize wrote

    prefix = unique_prefix("cards")
    common = ["--data-dir", str(cards.data_dir), "--topic-prefix", prefix]
    replica = cli(
        ["features", "fraud", *common, "--secret", SECRET, "--state-dir", str(scratch_dir() / f"state-{prefix}")]
        + ["--stop-after-idle", "20"],
        scratch_dir() / f"{prefix}features.log",
    )
    with running(replica):
        produced = cli(
            ["produce", "fraud", *common, "--mapping", str(cards.mapping), "--partitions", "2"],
            scratch_dir() / f"{prefix}produce.log",
        )
        assert produced.wait(300) == 0, (scratch_dir() / f"{prefix}produce.log").read_text()[-3000:]
        topic = f"{prefix}fraud-features"
        wait_for(lambda: len(read_raw(topic)) >= len(batch), 240, f"{len(batch)} rows on {topic}", every_s=1.0)
        replica.wait(120)
    stream = {key: row for key, row in read_topic(f"{prefix}fraud-features")}
    assert set(stream) == set(batch)
    differing = [key for key, row in batch.items() if stream[key] != row]
    assert not differing, (differing[:3], stream[differing[0]], batch[differing[0]])
    assert not ABSENT & set(next(iter(stream.values())))
