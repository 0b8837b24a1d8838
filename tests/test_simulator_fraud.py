"""The fraud payment simulator: valid, sorted, reproducible files with realistic fraud in them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.fraud.schemas import FraudLabel, Payment
from training.simulators.fraud import (
    KNOBS,
    PATTERNS,
    FraudSimulation,
    _generate,
    _haversine_km,
    _Simulated,
    simulate_fraud,
)

N = 5_000
SEED = 11
EASY = "easy"  # the pattern tests below check the easy simulator's plain signatures
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 90
ROOT = Path(__file__).resolve().parents[1]


def _luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number][::-1]
    total = sum(d if i % 2 == 0 else (2 * d - 9 if d > 4 else 2 * d) for i, d in enumerate(digits))
    return total % 10 == 0


def _iban_ok(iban: str) -> bool:
    compact = iban.replace(" ", "")
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _files(sim: FraudSimulation) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (sim.payments, sim.labels, sim.merchants)}


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory) -> tuple[FraudSimulation, list[int]]:
    steps: list[int] = []
    sim = simulate_fraud(
        tmp_path_factory.mktemp("parquet"), n_payments=N, seed=SEED, progress=steps.append, difficulty=EASY
    )
    return sim, steps


@pytest.fixture(scope="module")
def parquet_sim(parquet_run) -> FraudSimulation:
    return parquet_run[0]


@pytest.fixture(scope="module")
def jsonl_sim(tmp_path_factory) -> FraudSimulation:
    return simulate_fraud(tmp_path_factory.mktemp("jsonl"), n_payments=N, seed=SEED, fmt="jsonl", difficulty=EASY)


@pytest.fixture(scope="module")
def frame(parquet_sim) -> pd.DataFrame:
    """Payments with their label and merchant category, in file order."""
    payments = pq.read_table(parquet_sim.payments).to_pandas()
    labels = pq.read_table(parquet_sim.labels).to_pandas()
    merchants = pd.read_csv(parquet_sim.merchants).rename(columns={"lat": "m_lat", "lon": "m_lon"})
    out = payments.merge(labels, on=["payment_id", "merchant_id", "customer_id"], how="left", validate="1:1")
    return out.merge(merchants, on="merchant_id", how="left", validate="m:1")


# ----------------------------------------------------------------------------- files and schemas


def test_writes_the_three_files(parquet_sim, jsonl_sim):
    for sim, ext in ((parquet_sim, "parquet"), (jsonl_sim, "jsonl")):
        assert sim.payments.name == f"payments.{ext}"
        assert sim.labels.name == f"labels.{ext}"
        assert sim.merchants.name == "merchants.csv"
        assert sim.payments.parent == sim.labels.parent == sim.merchants.parent
        assert sim.n_payments == N


def test_parquet_rows_validate_against_the_schemas(parquet_sim):
    payments = pq.read_table(parquet_sim.payments)
    labels = pq.read_table(parquet_sim.labels)
    assert payments.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert labels.schema.field("known_at").type == pa.timestamp("ms", tz="UTC")
    assert "type" not in payments.schema.names and "type" not in labels.schema.names
    rows = payments.to_pylist()
    assert len(rows) == N
    for row in rows:
        msgspec.convert(row, Payment)
    for row in labels.to_pylist():
        msgspec.convert(row, FraudLabel)


def test_jsonl_lines_decode_as_the_schemas(jsonl_sim):
    lines = jsonl_sim.payments.read_bytes().splitlines()
    assert len(lines) == N
    for line in lines:
        msgspec.json.decode(line, type=Payment)
    first = json.loads(lines[0])
    assert "type" not in first
    assert first["ts"].endswith("Z")
    labels = jsonl_sim.labels.read_bytes().splitlines()
    assert len(labels) == N
    for line in labels:
        msgspec.json.decode(line, type=FraudLabel)


def test_both_formats_hold_the_same_events(parquet_sim, jsonl_sim):
    from_parquet = [msgspec.convert(r, Payment) for r in pq.read_table(parquet_sim.payments).to_pylist()]
    from_jsonl = [msgspec.json.decode(line, type=Payment) for line in jsonl_sim.payments.read_bytes().splitlines()]
    assert from_parquet == from_jsonl
    labels_parquet = [msgspec.convert(r, FraudLabel) for r in pq.read_table(parquet_sim.labels).to_pylist()]
    labels_jsonl = [msgspec.json.decode(line, type=FraudLabel) for line in jsonl_sim.labels.read_bytes().splitlines()]
    assert labels_parquet == labels_jsonl
    assert parquet_sim.merchants.read_bytes() == jsonl_sim.merchants.read_bytes()


def test_sorted_orders_and_unique_ids(parquet_sim, frame):
    payments = pq.read_table(parquet_sim.payments).to_pandas()
    labels = pq.read_table(parquet_sim.labels).to_pandas()
    assert payments.ts.is_monotonic_increasing
    assert labels.known_at.is_monotonic_increasing
    assert payments.payment_id.is_unique
    assert payments.ts.min() >= START
    assert payments.ts.max() < START + timedelta(days=DAYS)


# ----------------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_same_seed_gives_byte_identical_files(tmp_path, fmt):
    a = simulate_fraud(tmp_path / "a", n_payments=2_000, days=30, seed=3, fmt=fmt)
    b = simulate_fraud(tmp_path / "b", n_payments=2_000, days=30, seed=3, fmt=fmt)
    c = simulate_fraud(tmp_path / "c", n_payments=2_000, days=30, seed=4, fmt=fmt)
    assert _files(a) == _files(b)
    assert _files(a)[a.payments.name] != _files(c)[c.payments.name]


def test_same_seed_gives_identical_files_in_another_process(tmp_path):
    here = simulate_fraud(tmp_path / "here", n_payments=2_000, days=30, seed=5, fmt="jsonl")
    code = (
        "import sys; from pathlib import Path\n"
        "from training.simulators.fraud import simulate_fraud\n"
        "simulate_fraud(Path(sys.argv[1]), n_payments=2_000, days=30, seed=5, fmt='jsonl')"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, cwd=ROOT, env=env)
    there = FraudSimulation(
        payments=tmp_path / "there" / "payments.jsonl",
        labels=tmp_path / "there" / "labels.jsonl",
        merchants=tmp_path / "there" / "merchants.csv",
        n_payments=here.n_payments,
        n_fraud=here.n_fraud,
    )
    assert _files(here) == _files(there)


def test_progress_adds_up_to_the_payments(parquet_run):
    sim, steps = parquet_run
    assert sum(steps) == sim.n_payments
    assert len(steps) > 3 and all(step > 0 for step in steps)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        simulate_fraud(tmp_path, n_payments=10)
    with pytest.raises(ValueError):
        simulate_fraud(tmp_path, n_payments=2_000, days=1)
    with pytest.raises(ValueError):
        simulate_fraud(tmp_path, n_payments=2_000, fmt="csv")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the world


def test_identifiers_and_values_look_real(frame, parquet_sim):
    assert frame.card_number.map(_luhn_ok).all()
    assert frame.card_number.str.fullmatch(r"[45]\d{15}").all()
    assert frame.customer_id.str.fullmatch(r"C\d+").all()
    assert frame.merchant_id.str.fullmatch(r"M\d+").all()
    assert frame.ip.str.fullmatch(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}").all()
    assert frame.email.str.fullmatch(r"[a-z0-9._]+@[a-z0-9.-]+\.[a-z]+").all()
    assert (frame.amount > 0).all()
    assert np.allclose(frame.amount, frame.amount.round(2))
    assert set(frame.channel) == {"pos", "contactless", "online", "atm"}
    currencies = frame.currency.value_counts(normalize=True)
    assert currencies.index[0] == "EUR" and currencies["EUR"] > 0.6
    assert set(currencies.index) <= {"EUR", "SEK", "GBP", "USD", "DKK", "NOK", "CHF"}
    cards = frame.groupby("customer_id").card_number.nunique()
    assert cards.between(1, 2).all() and (cards == 2).any()
    assert frame.groupby("card_number").customer_id.nunique().eq(1).all()

    online_cats = {"online_marketplace", "digital_goods", "travel"}
    assert (frame.channel.eq("online") == frame.category.isin(online_cats)).all()
    assert (frame.channel.eq("atm") == frame.category.eq("atm_operator")).all()
    present = frame[frame.channel != "online"]
    assert np.allclose(present.lat, present.m_lat) and np.allclose(present.lon, present.m_lon)

    merchants = pd.read_csv(parquet_sim.merchants)
    assert list(merchants.columns) == ["merchant_id", "category", "lat", "lon"]
    assert merchants.merchant_id.is_unique and len(merchants) >= 50
    assert set(frame.merchant_id) <= set(merchants.merchant_id)
    assert merchants.lat.between(-90, 90).all() and merchants.lon.between(-180, 180).all()


def test_customers_shop_mostly_near_home(frame):
    genuine = frame[~frame.is_fraud & (frame.channel != "online")]
    home = genuine.groupby("customer_id")[["lat", "lon"]].median()
    km = _haversine_km(
        genuine.lat,
        genuine.lon,
        genuine.customer_id.map(home.lat),
        genuine.customer_id.map(home.lon),
    )
    assert (km < 50).mean() > 0.85


def test_time_of_day_follows_daily_rhythms(frame):
    hours = frame.ts.dt.hour.value_counts(normalize=True)
    assert hours.reindex(range(1, 5), fill_value=0).sum() < 0.03
    assert hours.reindex(range(10, 19), fill_value=0).sum() > 0.5


# ----------------------------------------------------------------------------- labels and fraud


def test_fraud_rate_is_realistic(parquet_sim, frame):
    assert frame.is_fraud.notna().all()
    assert parquet_sim.n_fraud == int(frame.is_fraud.sum())
    assert 0.006 <= parquet_sim.n_fraud / N <= 0.012


def test_every_payment_has_one_label_known_later(parquet_sim, frame):
    labels = pq.read_table(parquet_sim.labels).to_pandas()
    assert labels.payment_id.is_unique and len(labels) == N
    assert set(labels.payment_id) == set(frame.payment_id)
    assert (frame.known_at > frame.ts).all()
    delay = frame.known_at - frame.ts
    assert (delay[~frame.is_fraud] == timedelta(days=14)).all()
    fraud_delay = delay[frame.is_fraud]
    assert fraud_delay.between(timedelta(days=1), timedelta(days=60)).all()
    assert timedelta(days=3) < fraud_delay.median() < timedelta(days=14)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_four_patterns_are_present(seed):
    sim = _generate(N, DAYS, seed, int(START.timestamp() * 1000), difficulty=EASY)
    counts = np.bincount(sim.pattern, minlength=len(PATTERNS))
    assert counts.sum() == N
    assert (counts[1:] > 0).all(), dict(zip(PATTERNS, counts.tolist(), strict=True))
    assert 0.006 <= counts[1:].sum() / N <= 0.012


def test_card_testing_bursts_of_tiny_online_payments(frame):
    tiny = frame[(frame.channel == "online") & (frame.amount <= 3)].sort_values("ts")
    bursts = []
    for card, group in tiny.groupby("card_number"):
        ts = group.ts.to_numpy()
        for i in range(len(ts) - 4):
            if ts[i + 4] - ts[i] <= np.timedelta64(10, "m"):
                bursts.append((card, group.iloc[i : i + 5]))
                break
    assert bursts
    for card, burst in bursts:
        assert burst.is_fraud.all()
        assert burst.category.isin(["digital_goods", "online_marketplace"]).all()
        after = frame[(frame.card_number == card) & (frame.ts > burst.ts.max())]
        soon = after[after.ts <= burst.ts.max() + timedelta(hours=4)]
        assert (soon.is_fraud & (soon.amount >= 100)).any()


def test_stolen_cards_are_used_far_from_home_soon_after(frame):
    genuine = frame[~frame.is_fraud & (frame.channel != "online")]
    home = genuine.groupby("customer_id")[["lat", "lon"]].median()
    frame = frame.sort_values(["card_number", "ts"])
    previous = frame.groupby("card_number")[["lat", "lon", "ts"]].shift()
    jump_km = _haversine_km(previous.lat, previous.lon, frame.lat, frame.lon)
    hours = (frame.ts - previous.ts).dt.total_seconds() / 3600
    from_home = _haversine_km(frame.lat, frame.lon, frame.customer_id.map(home.lat), frame.customer_id.map(home.lon))
    impossible = (jump_km > 400) & (jump_km / np.maximum(hours, 1 / 60) > 500)
    shops = frame.category.isin(["electronics", "jewelry"]) & (frame.channel != "online")
    far_fraud = frame[impossible & shops & (from_home > 400)]
    assert len(far_fraud) > 0 and far_fraud.is_fraud.all()
    assert impossible[~frame.is_fraud].mean() < 0.005


def test_compromised_merchants_have_a_fraud_spike(frame):
    present = frame[frame.channel != "online"]
    fraud = present[present.is_fraud]
    spikes = []
    for merchant, group in fraud.groupby("merchant_id"):
        if len(group) < 3:
            continue
        start, end = group.ts.min(), group.ts.max()
        window = present[(present.merchant_id == merchant) & present.ts.between(start, end)]
        spikes.append(window.is_fraud.mean())
    assert spikes and max(spikes) >= 0.3
    busy = frame.groupby("merchant_id").filter(lambda g: len(g) >= 20)
    assert busy.groupby("merchant_id").is_fraud.mean().max() < 0.9


def test_account_takeovers_come_from_new_devices_with_large_amounts(frame):
    online = frame[frame.channel == "online"].sort_values("ts")
    new_device = ~online.duplicated(["customer_id", "device_id"])
    usual = frame[~frame.is_fraud].groupby("customer_id").amount.median()
    large = online.amount >= 3 * online.customer_id.map(usual)
    takeover = online[new_device & large & online.is_fraud & (online.amount > 3)]
    assert len(takeover) > 0
    customers_devices = frame[~frame.is_fraud].groupby("customer_id").device_id.agg(set)
    for row in takeover.itertuples():
        assert row.device_id not in customers_devices.get(row.customer_id, set())


def test_fraud_keeps_the_victims_identity(frame):
    genuine = frame[~frame.is_fraud]
    owners = genuine.groupby("card_number").customer_id.first()
    fraud = frame[frame.is_fraud]
    known = fraud[fraud.card_number.isin(owners.index)]
    assert len(known) / len(fraud) > 0.8
    assert (known.customer_id == known.card_number.map(owners)).all()


# ----------------------------------------------------------------------------- references


def test_references_mix_harmless_text_and_personal_data(frame):
    refs = frame.reference
    assert (refs == "").mean() < 0.6
    assert refs.str.contains(r"^(?:Order|Table|Groceries|Monthly subscription)").any()

    emails = refs.str.contains(r"[\w.+-]+@[\w-]+\.[\w.]+")
    card = r"(?<![\dA-Z] )\b([45]\d{3} \d{4} \d{4} \d{4})\b(?! \d)"  # not inside a spaced IBAN
    cards = refs.str.extract(card)[0].dropna()
    ibans = refs.str.extract(r"\b([A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?)\b")[0]
    ibans = ibans.dropna()
    ips = refs.str.contains(r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b")
    own_name = pd.Series(
        [name in ref for name, ref in zip(frame.cardholder_name, refs, strict=True)],
        index=frame.index,
    )
    assert emails.sum() > 0 and ips.sum() > 0 and own_name.sum() > 0
    assert len(cards) > 0 and cards.str.replace(" ", "").map(_luhn_ok).all()
    assert len(ibans) > 0 and ibans.map(_iban_ok).all()
    personal = emails | ips | own_name | refs.index.isin(cards.index) | refs.index.isin(ibans.index)
    assert 0.03 < personal.mean() < 0.12
    assert re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9 ]+", ibans.iloc[0])


def test_custom_start_and_window(tmp_path):
    start = datetime(2025, 6, 15, 13, 30)  # naive: taken as UTC
    sim = simulate_fraud(tmp_path, n_payments=1_000, days=7, seed=1, start=start)
    ts = pq.read_table(sim.payments).column("ts").to_pandas()
    assert ts.min() >= start.replace(tzinfo=UTC)
    assert ts.max() < start.replace(tzinfo=UTC) + timedelta(days=7)
    assert sim.n_fraud > 0


# ----------------------------------------------------------------------------- the hard default


@pytest.fixture(scope="module")
def hard() -> _Simulated:
    return _generate(20_000, 30, SEED, int(START.timestamp() * 1000))


def test_hard_has_every_pattern_at_its_share(hard):
    counts = np.bincount(hard.pattern, minlength=len(PATTERNS))
    assert 0.006 <= counts[1:].sum() / hard.n <= 0.012
    shares = counts[1:] / counts[1:].sum()
    assert np.allclose(shares, KNOBS["hard"].share, atol=0.05), shares


def test_hard_frauds_sit_inside_the_usual_amounts(hard):
    """The amount alone no longer gives most frauds away: their median is near the genuine one."""
    eur, cust, fraud = hard.cols["eur"], hard.cols["cust"], hard.pattern > 0
    usual = pd.Series(eur[~fraud]).groupby(cust[~fraud]).median()
    ratio = eur[fraud] / pd.Series(cust[fraud]).map(usual).to_numpy()
    assert np.nanmedian(ratio) < 2.5
    easy = _generate(20_000, 30, SEED, int(START.timestamp() * 1000), difficulty="easy")
    e_fraud = easy.pattern > 0
    e_usual = pd.Series(easy.cols["eur"][~e_fraud]).groupby(easy.cols["cust"][~e_fraud]).median()
    e_ratio = easy.cols["eur"][e_fraud] / pd.Series(easy.cols["cust"][e_fraud]).map(e_usual).to_numpy()
    assert np.nanmedian(ratio) < np.nanmedian(e_ratio) / 2


def test_hard_label_delays_differ_between_chargebacks_and_disputes(hard):
    delay = (hard.known_at - hard.cols["ts"]) / 86_400_000
    fraud = hard.pattern > 0
    assert (delay[~fraud] == 14).all()
    assert delay[fraud].min() >= 2 and delay[fraud].max() <= 45
    assert 7 < np.median(delay[fraud]) < 14


def test_unknown_difficulty_is_refused(tmp_path):
    with pytest.raises(ValueError, match="difficulty"):
        simulate_fraud(tmp_path, n_payments=2_000, difficulty="medium")  # type: ignore[arg-type]


def test_cli_difficulty_easy_gives_the_easy_files_and_other_use_cases_refuse_it(tmp_path):
    from typer.testing import CliRunner

    from training.cli import app

    runner = CliRunner()
    args = ["simulate", "fraud", "--data-dir", str(tmp_path / "cli"), "--size", "2000", "--days", "30", "--seed", "3"]
    result = runner.invoke(app, [*args, "--difficulty", "easy"])
    assert result.exit_code == 0, result.output
    easy = simulate_fraud(tmp_path / "direct", n_payments=2_000, days=30, seed=3, fmt="jsonl", difficulty="easy")
    assert (tmp_path / "cli" / "fraud" / "labels.jsonl").read_bytes() == easy.labels.read_bytes()
    assert runner.invoke(app, [*args, "--difficulty", "medium"]).exit_code != 0
    loan = runner.invoke(app, ["simulate", "loan", "--data-dir", str(tmp_path / "loan"), "--difficulty", "easy"])
    assert loan.exit_code != 0
