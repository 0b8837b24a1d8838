"""Optional payment fields: feature groups switch on only with their fields, the rest is unchanged."""

from __future__ import annotations

import csv
import json
import random
from math import isclose
from pathlib import Path
from typing import Any

import msgspec
import pytest

from features.featureset import LocalRunner
from features.fields import BuiltFor, present_fields, read_record, write_record
from features.fraud import FraudFeatureSet, Payment
from features.fraud.featureset import GROUPS
from features.mapping import Mapping
from features.usecases import build_featureset
from tests.conftest import CANARIES, MERCHANTS, label

MINIMAL = ("payment_id", "ts", "customer_id", "merchant_id", "amount")
OPTIONAL = FraudFeatureSet.optional_fields()


def minimal(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k in MINIMAL}


def test_a_minimal_payment_makes_a_row_without_the_absent_groups(payment) -> None:
    fs = FraudFeatureSet(None, secret="s", fields=())
    assert fs.enabled == ()
    outcome = LocalRunner(fs).process("payment", minimal(payment()))
    assert outcome.dead_letter is None
    (row,) = outcome.rows
    assert set(row) == set(fs.columns)
    absent = {f for g in GROUPS for f in (*g.features, *g.columns)}
    assert not absent & set(row)
    assert not absent & set(fs.feature_names)
    assert "log_amount" in fs.feature_names and "merchant_fraud_rate_7d" in fs.feature_names
    assert row["card_key"] == row["customer_key"]  # without a card number the customer is its card


def test_a_payment_without_location_or_device_has_neither_column(payment) -> None:
    fields = OPTIONAL - {"lat", "lon", "device_id", "ip"}
    fs = FraudFeatureSet(MERCHANTS, secret="s", fields=fields)
    assert set(fs.enabled) == {"card", "currency", "channel", "category", "identity", "reference"}
    event = {k: v for k, v in payment().items() if k not in ("lat", "lon", "device_id", "ip")}
    (row,) = LocalRunner(fs).process("payment", event).rows
    for gone in ("log_km_from_last", "log_speed_kmh", "log_km_from_usual", "new_device", "new_ip"):
        assert gone not in row and gone not in fs.columns
    assert row["category_grocery"] == 1.0 and row["channel_pos"] == 1.0
    full = FraudFeatureSet(MERCHANTS, secret="s")
    assert set(full.columns) - set(fs.columns) == {
        "log_km_from_last",
        "log_speed_kmh",
        "log_km_from_usual",
        "new_device",
        "new_ip",
    }


def test_the_class_still_declares_every_column() -> None:
    narrow = FraudFeatureSet(None, fields=())
    assert len(FraudFeatureSet.columns) > len(narrow.columns)
    assert FraudFeatureSet(MERCHANTS).columns == FraudFeatureSet.columns


def test_enabled_groups_are_params_and_make_another_version() -> None:
    full, narrow = FraudFeatureSet(MERCHANTS), FraudFeatureSet(MERCHANTS, fields=("currency",))
    assert full.params()["groups"] == [g.name for g in GROUPS]
    assert narrow.params()["groups"] == ["currency", "category"]
    assert full.version != narrow.version
    assert FraudFeatureSet(None).version == FraudFeatureSet(None, fields=OPTIONAL).version != full.version
    assert FraudFeatureSet(MERCHANTS, fields=OPTIONAL).version == full.version
    assert "merchant_id" not in OPTIONAL and "lat" in OPTIONAL


def test_zero_amounts_are_payments(payment) -> None:
    for fs in (FraudFeatureSet(MERCHANTS), FraudFeatureSet(None, fields=())):
        runner = LocalRunner(fs)
        amounts = ((0, 0.0), (1, 0.0), (2, 5))
        rows = [runner.process("payment", payment(minutes=m, amount=a)).rows[0] for m, a in amounts]
        assert rows[0]["log_amount"] == 0.0 and rows[0]["amount_eur"] == 0.0
        assert rows[1]["amount_z"] == 0.0 and rows[1]["log_amount_ratio"] == 0.0
        assert rows[2]["count_1h"] == 2.0 and rows[2]["log_spend_1h"] == 0.0  # the history before it
        assert rows[2]["log_amount_ratio"] == pytest.approx(1.791759, rel=1e-5)
    rejected = LocalRunner(FraudFeatureSet(MERCHANTS)).process("payment", payment(amount=-0.01))
    assert rejected.dead_letter is not None and ">= 0.0" in rejected.dead_letter.reason


def _history(payment, n: int = 400, seed: int = 5) -> list[tuple[str, dict[str, Any]]]:
    """Payments of a few customers at a few merchants, with labels in between."""
    rng = random.Random(seed)
    events: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        p = payment(
            minutes=i * 37.0,
            customer_id=f"C{rng.randrange(6)}",
            merchant_id=rng.choice(["M1", "M2", "M3"]),
            amount=round(rng.choice([0.0, rng.uniform(1, 500)]), 2),
            lat=rng.uniform(48, 60),
            lon=rng.uniform(2, 19),
            device_id=f"d{rng.randrange(3)}",
            ip=f"10.0.0.{rng.randrange(3)}",
            channel=rng.choice(["pos", "online"]),
        )
        events.append(("payment", p))
        if i % 5 == 0:
            events.append(("label", label(p["payment_id"], i * 37.0 + 30, rng.random() < 0.3, p["merchant_id"])))
    return events


def test_the_features_of_the_groups_on_equal_the_full_featuresets(payment) -> None:
    """A dataset without some fields gets, for the groups it has, exactly the full FeatureSet's features."""
    events = _history(payment)
    full = LocalRunner(FraudFeatureSet(MERCHANTS, secret="s"))
    kept = {"currency", "channel"}
    narrow_fs = FraudFeatureSet(None, secret="s", fields=kept)
    narrow = LocalRunner(narrow_fs)
    compared = 0
    for kind, event in events:
        wide_rows = full.process(kind, event).rows
        shorter = {k: v for k, v in event.items() if k in (*MINIMAL, *kept)} if kind == "payment" else event
        narrow_rows = narrow.process(kind, shorter).rows
        assert len(wide_rows) == len(narrow_rows)
        for wide, row in zip(wide_rows, narrow_rows, strict=True):
            assert set(row) == set(narrow_fs.columns)
            for column in narrow_fs.columns:
                if column == "card_key":
                    continue
                a, b = wide[column], row[column]
                assert a == b or (isinstance(a, float) and isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)), column
            compared += 1
    assert compared == 400
    assert {"merchant_fraud_rate_30d", "count_7d", "foreign_currency", "channel_online"} <= set(narrow_fs.feature_names)


def test_a_field_of_a_group_that_is_on_is_required(payment) -> None:
    fs = FraudFeatureSet(MERCHANTS, fields=("lat", "lon", "device_id"))
    event = {k: v for k, v in payment().items() if k not in ("lon", "device_id")}
    letter = LocalRunner(fs).process("payment", event).dead_letter
    assert letter is not None
    assert "`lon` (feature group location)" in letter.reason and "`device_id` (feature group device)" in letter.reason


def test_fields_a_featureset_does_not_use_are_ignored_and_still_never_leave(payment) -> None:
    fs = FraudFeatureSet(None, secret="s", fields=())
    outcome = LocalRunner(fs).process("payment", payment(**CANARIES, reference=f"from {CANARIES['email']}"))
    assert outcome.dead_letter is None
    text = repr(outcome.rows)
    for value in CANARIES.values():
        assert value not in text
    bad = LocalRunner(fs).process("payment", payment(**CANARIES, amount="lots"))
    assert bad.dead_letter is not None
    for value in CANARIES.values():
        assert value not in bad.dead_letter.payload


def test_a_payment_encodes_without_the_fields_it_lacks(payment) -> None:
    fs = FraudFeatureSet(None, fields=())
    event = fs.parse("payment", minimal(payment()))
    assert set(json.loads(msgspec.json.encode(event))) == {"type", *MINIMAL}
    assert isinstance(event, Payment) and event.lat is None


def test_present_fields_reads_the_first_events_through_the_mapping(tmp_path: Path, payment) -> None:
    path = tmp_path / "cards.csv"
    rows = [minimal(payment(minutes=i)) | {"LAT": 59.3, "LON": 18.0} for i in range(20)]
    rows[3]["device_id"] = "dev-9"  # only some rows: the group stays off
    del rows[0]["LAT"], rows[1]["LON"]  # a few faulty rows do not switch location off
    rows[4]["reference"] = "Order 1"  # a reference the schema fills when absent: on
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*MINIMAL, "LAT", "LON", "device_id", "reference"])
        writer.writeheader()
        writer.writerows(rows)
    schemas = FraudFeatureSet.schemas
    optional = FraudFeatureSet.optional_fields()
    assert present_fields(schemas, optional, [("payment", path)]) == ("reference",)
    mapping = Mapping.from_options("payment", ["--rename", "lat=LAT", "--rename", "lon=LON", "--const", "currency=EUR"])
    found = present_fields(schemas, optional, [("payment", path)], mapping)
    assert found == ("currency", "lat", "lon", "reference")


def test_build_featureset_follows_the_record(tmp_path: Path) -> None:
    folder = tmp_path / "fraud"
    assert not (folder / "merchants.csv").exists()
    assert build_featureset("fraud", folder, "s").enabled == tuple(g.name for g in GROUPS if g.name != "category")
    merchants = tmp_path / "refs.csv"
    merchants.write_text("merchant_id,category,lat,lon\nM1,grocery,59.3,18.0\n")
    write_record(folder, BuiltFor(("lat", "lon"), {"merchants": str(merchants)}))
    assert read_record(folder) == BuiltFor(("lat", "lon"), {"merchants": str(merchants)})
    fs = build_featureset("fraud", folder, "s")
    assert fs.enabled == ("category", "location")
    merchants.unlink()
    with pytest.raises(FileNotFoundError, match="refs.csv not found"):
        build_featureset("fraud", folder, "s")


def test_a_failed_materialize_leaves_the_record_as_it_was(tmp_path: Path, payment) -> None:
    from typer.testing import CliRunner

    from training.cli import app

    folder = tmp_path / "fraud"
    write_record(folder, BuiltFor(("lat", "lon"), {}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(minimal(payment()) | {"amount": "lots"}) + "\n")
    result = CliRunner().invoke(
        app,
        ["materialize", "fraud", "--data-dir", str(tmp_path), "--db", str(tmp_path / "x.duckdb")]
        + ["--events", f"payment={bad}"],
    )
    assert result.exit_code == 1  # every event rejected
    assert read_record(folder) == BuiltFor(("lat", "lon"), {})
