"""The per-use-case decision layer of the live scorer, without a broker or a registry.

Each decider must read its policy from a model version's tags as training writes them, refuse
a version it cannot decide with, and decide a row exactly as the pure functions in `features/`
do offline. The replay producer must publish rejected CSV rows typed, so that the feature
process rejects them for the batch driver's reasons.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from features.featureset import InvalidEvent
from features.loan import FEATURES as LOAN_FEATURES
from features.loan import MODEL_INPUTS, PricingPolicy, quote_row
from features.sources import typed_row
from features.store import StoreFeatureSet, load_products, load_stores
from features.store.featureset import FEATURES as STORE_FEATURES
from features.store.policy import MARKDOWN_DEPTHS, Spread, decide, markdown_scenario
from features.store.schemas import Delivery, StockCount
from serving import produce
from serving.deciders import FraudDecider, LoanDecider, StoreDecider, Thresholds, decider_for
from serving.registry import LoadedModel, ModelWatcher
from serving.scorer import ScoringProcess
from serving.settings import LiveSettings

POLICY = PricingPolicy(floor=0.06, cap=0.2, step=0.005, funding_rate=0.03, lgd=0.5)


FEATURESET_VERSION = "0123456789ab"


def _model(
    decider: Any, inputs: tuple[str, ...], policy: Any, predict_many: Any, predict_one: Any = None
) -> LoadedModel:
    return LoadedModel(
        name="m",
        version="4",
        ref="champion",
        feature_names=inputs,
        row_features=tuple(n for n in inputs if n not in decider.supplied_inputs),
        policy=policy,
        predict_one=predict_one or (lambda row: float(predict_many(np.asarray([row]))[0])),
        predict_many=predict_many,
        featureset_version=FEATURESET_VERSION,
    )


def test_every_use_case_has_a_decider_and_only_those() -> None:
    assert [type(decider_for(u)) for u in ("fraud", "loan", "store")] == [FraudDecider, LoanDecider, StoreDecider]
    assert all(decider_for(u).use_case == u for u in ("fraud", "loan", "store"))
    with pytest.raises(ValueError, match="unknown use case 'refunds'"):
        decider_for("refunds")


def test_fraud_cuts_the_score_by_the_version_thresholds(caplog: pytest.LogCaptureFixture) -> None:
    decider = FraudDecider()
    thresholds = decider.policy({"threshold_review": "0.3", "threshold_block": "0.7"}, ("a",), "m v1")
    assert thresholds == Thresholds(0.3, 0.7)
    model = _model(decider, ("a",), thresholds, lambda x: x[:, 0])
    assert [decider.decide(model, {}, [s]) for s in (0.1, 0.3, 0.95)] == [
        {"score": 0.1, "decision": "approve", "reasons": None},
        {"score": 0.3, "decision": "review", "reasons": None},
        {"score": 0.95, "decision": "block", "reasons": None},
    ]
    assert decider.summary({"score": 0.3, "decision": "review"}) == (0.3, "review")
    with caplog.at_level(logging.WARNING, logger="samestream.deciders"):
        assert decider.policy({"threshold_review": "0.9", "threshold_block": "0.2"}, ("a",), "m v2") == Thresholds()
    assert "m v2 has unusable thresholds" in caplog.text
    assert decider.policy({}, ("a",), "m v3") == Thresholds()


def _loan_model() -> LogisticRegression:
    """Acceptance falls with the rate and rises with the first feature: an interior optimum."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4_000, len(MODEL_INPUTS)))
    x[:, -1] = rng.uniform(0.04, 0.24, size=len(x))
    logit = 1.5 + 0.8 * x[:, 0] - 22.0 * x[:, -1]
    y = rng.random(len(x)) < 1 / (1 + np.exp(-logit))
    return LogisticRegression(max_iter=1_000).fit(x, y)


def _loan_rows(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(5)
    return [
        {
            "application_id": f"A{i:07d}",
            **{name: float(v) for name, v in zip(LOAN_FEATURES, rng.normal(size=len(LOAN_FEATURES)), strict=True)},
            "amount_eur": float(rng.uniform(2_000, 40_000)),
            "term_months": int(rng.choice([12, 36, 60])),
            "pd_annual": float(rng.uniform(0.002, 0.08)),
        }
        for i in range(n)
    ]


def test_loan_reads_the_pricing_policy_from_the_version_tags() -> None:
    decider = LoanDecider()
    tags = {**POLICY.as_params(), "candidate": "logistic_regression"}
    assert decider.policy({k: str(v) for k, v in tags.items()}, MODEL_INPUTS, "m v1") == POLICY
    assert decider.policy({}, MODEL_INPUTS, "m v1") == PricingPolicy()
    with pytest.raises(ValueError, match="floor <= cap"):
        decider.policy({"pricing_floor": "0.3", "pricing_cap": "0.2"}, MODEL_INPUTS, "m v1")
    with pytest.raises(ValueError, match="takes the rate, 'offered_rate', as its last input"):
        decider.policy({}, LOAN_FEATURES, "m v1")


def test_loan_offers_the_rate_quote_row_gives_never_below_the_floor() -> None:
    decider = LoanDecider()
    estimator = _loan_model()
    batches: list[int] = []

    def predict_many(x: np.ndarray) -> np.ndarray:
        batches.append(len(x))
        return estimator.predict_proba(x)[:, 1]

    model = _model(decider, MODEL_INPUTS, POLICY, predict_many)
    assert model.row_features == LOAN_FEATURES
    rows = _loan_rows(60)
    offers = [decider.decide(model, row, [row[n] for n in model.row_features]) for row in rows]
    assert batches == [len(POLICY.grid())] * len(rows), "one batch over the rate grid per application"
    grid = set(POLICY.grid().tolist())
    for row, offer in zip(rows, offers, strict=True):
        quote = quote_row(row, lambda x: estimator.predict_proba(x)[:, 1], POLICY)
        assert offer == {"rate": quote.rate, "p_accept": quote.p_accept, "expected_value": quote.expected_value}
        assert offer["rate"] >= POLICY.floor and offer["rate"] in grid
    rates = {o["rate"] for o in offers}
    assert len(rates) > 3 and min(rates) >= POLICY.floor, "the grid should be searched, not one rate offered"
    assert decider.summary(offers[0]) == (offers[0]["p_accept"], f"{offers[0]['rate']:.4f}")
    assert decider.summary(dict.fromkeys(decider.fields)) == (None, None)


SPREAD = Spread.fit([max(0.0, 10 + r) for r in np.linspace(-6, 6, 200)], [10.0] * 200)


def _store_rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(9)
    rows = []
    for i in range(40):
        row: dict[str, Any] = {name: 0.0 for name in STORE_FEATURES}
        row |= {
            "row_id": f"S001|P{i:03d}|2025-11-04",
            "mean_7": float(rng.uniform(1, 30)),
            "price_ratio": 1.0,
            "promotion": float(i % 5 == 0),
            "days_since_price_change": 12.0,
            "shelf_life_days": float(rng.choice([1, 3, 7])),
            "sold_by_weight": float(i % 4 == 0),
            "on_hand": float(rng.uniform(0, 20)),
            "price": float(rng.uniform(1, 9)),
        }
        row["expiring_1d"] = row["on_hand"] * float(rng.choice([0.0, 0.5, 1.0]))
        row["unit_cost"] = row["price"] * 0.55
        rows.append(row)
    return rows


def _demand(x: np.ndarray) -> np.ndarray:
    """Demand rises as the price falls: markdowns sell expiring stock."""
    names = list(STORE_FEATURES)
    return x[:, names.index("mean_7")] * x[:, names.index("price_ratio")] ** -2.5


def test_store_reads_the_spread_from_the_version_tags() -> None:
    decider = StoreDecider()
    tag = json.dumps([round(q, 6) for q in SPREAD.quantiles])
    assert decider.policy({"spread_quantiles": tag}, STORE_FEATURES, "m v1") == Spread(
        tuple(round(q, 6) for q in SPREAD.quantiles)
    )
    for bad, reason in (
        ({}, "no spread_quantiles tag"),
        ({"spread_quantiles": "[1, "}, "not a JSON list of numbers"),
        ({"spread_quantiles": '"wide"'}, "not a JSON list of numbers"),
        ({"spread_quantiles": "[2, 1]"}, "ascending"),
        ({"spread_quantiles": "[]"}, "ascending"),
    ):
        with pytest.raises(ValueError, match=reason):
            decider.policy(bad, STORE_FEATURES, "m v1")


def test_store_orders_and_marks_down_as_decide_does_offline() -> None:
    decider = StoreDecider()
    batches: list[int] = []

    def predict_many(x: np.ndarray) -> np.ndarray:
        batches.append(len(x))
        return _demand(x)

    model = _model(decider, STORE_FEATURES, SPREAD, predict_many)
    rows = _store_rows()
    decisions = [decider.decide(model, row, [row[n] for n in model.row_features]) for row in rows]
    assert batches == [len(MARKDOWN_DEPTHS) if r["expiring_1d"] > 0 else 1 for r in rows]
    for row, got in zip(rows, decisions, strict=True):
        scenarios = [markdown_scenario(row, d) for d in MARKDOWN_DEPTHS]
        forecasts = _demand(np.asarray([[s[n] for n in STORE_FEATURES] for s in scenarios]))
        expected = decide(
            dict(zip(MARKDOWN_DEPTHS, forecasts.tolist(), strict=True)),
            SPREAD,
            row["on_hand"],
            row["expiring_1d"],
            row["price"],
            row["unit_cost"],
            int(row["shelf_life_days"]),
            0.1 if row["sold_by_weight"] else 1.0,
        )
        assert got == {
            "order_qty": expected.order_qty,
            "markdown": expected.markdown,
            "forecast": forecasts[0],
            "expected_sold": expected.expected_sold,
            "expected_waste": expected.expected_waste,
            "expected_margin": expected.expected_margin,
        }
        if row["expiring_1d"] == 0:
            assert got["markdown"] == 0.0
    assert any(d["markdown"] > 0 for d in decisions), "a markdown should pay somewhere with demand this elastic"
    assert any(d["order_qty"] % 1 for d in decisions), "goods sold by weight are ordered in tenths"
    first = decisions[0]
    assert decider.summary(first) == (
        first["forecast"],
        f"order {first['order_qty']:g}, markdown {first['markdown']:g}",
    )


def test_the_scorer_decides_with_the_use_case_of_its_rows(tmp_path: Path) -> None:
    store = _store_folder(tmp_path)
    fs = StoreFeatureSet(load_products(store / "products.csv"), load_stores(store / "stores.csv"))
    watcher = ModelWatcher(None, "store-demand", "champion", tuple(fs.columns))  # type: ignore[arg-type]
    watcher.current = _model(watcher.decider, STORE_FEATURES, SPREAD, _demand)
    with pytest.raises(ValueError, match="loads models for fraud decisions, the rows are store's"):
        ScoringProcess(fs, LiveSettings("store", state_dir=tmp_path), watcher)


def _store_folder(root: Path) -> Path:
    folder = root / "store"
    folder.mkdir()
    (folder / "products.csv").write_text(
        "product_id,name,category,unit,shelf_life_days,base_price,unit_cost,case_size,max_sale_qty\n"
        "P001,Sourdough loaf,bakery,piece,2,3.9,1.5,8,12\n"
        "P012,Bananas,produce,kg,5,2.2,1.1,18,8\n"
    )
    (folder / "stores.csv").write_text("store_id,timezone\nS001,Europe/Stockholm\n")
    return folder


def test_csv_rows_are_typed_where_they_convert() -> None:
    row = {"quantity": "-3", "counted_at": "2025-06-02T22:25:54+02:00", "unit": "litre", "note": "7", "count_id": "9"}
    typed = typed_row(StockCount, row)
    assert typed["quantity"] == -3.0 and typed["count_id"] == "9" and typed["unit"] == "litre"
    assert typed["note"] == "7", "a field the schema lacks stays as it is"
    assert typed_row(Delivery, {"quantity": "lots"})["quantity"] == "lots"


def test_rejected_csv_rows_reach_the_feature_process_with_the_batch_reasons(tmp_path: Path) -> None:
    """Published typed, a CSV row the FeatureSet rejects is rejected live for the reason batch gives."""
    store = _store_folder(tmp_path)
    fs = StoreFeatureSet(load_products(store / "products.csv"), load_stores(store / "stores.csv"))
    (store / "deliveries.csv").write_text(
        "delivery_id,store_id,product_id,delivered_at,quantity,unit,best_before\n"
        "D1,S001,P001,2025-06-02T03:47:36Z,40,piece,2025-06-03\n"
        "D2,S001,P001,2025-06-02T03:48:00Z,0,piece,2025-06-03\n"
        "D3,S001,P001,2025-06-02T03:49:00Z,lots,piece,2025-06-03\n"
        "D4,S001,P999,2025-06-02T03:50:00Z,2,case,2025-06-03\n"
        "D5,S001,P012,2025-06-02T03:51:00Z,3,litre,2025-06-04\n"
        "D6,S001,P012,2025-06-02T03:52:00Z,,kg,2025-06-04\n"
    )
    (store / "stock_counts.csv").write_text(
        "count_id,store_id,product_id,counted_at,quantity,unit\n"
        "C1,S001,P001,2025-06-02T22:25:54.428+02:00,14,piece\n"
        "C2,S001,P001,2025-06-02T22:26:00+02:00,-3,piece\n"
        "C3,S001,P012,2025-06-02T22:27:00+02:00,1.5,kg\n"
    )
    files = [
        produce.EventFile("delivery", store / "deliveries.csv"),
        produce.EventFile("stock_count", store / "stock_counts.csv"),
    ]

    def reason(kind: str | None, payload: Any) -> str:
        """Why the FeatureSet rejects a payload; empty if it accepts it."""
        try:
            fs.parse(kind, payload)
        except InvalidEvent as exc:
            return exc.reason
        return ""

    batch = sorted((f.kind, reason(f.kind, payload)) for f in files for payload in produce.read_payloads(f.path))
    live = sorted((msgspec.json.decode(m.value)["type"], reason(None, m.value)) for m in produce.load(fs, files))
    assert live == batch
    rejected = [r for _, r in batch if r]
    assert len(rejected) == 6 and len(batch) == 9
    assert any(r.startswith("negative stock") for r in rejected)
    assert any("Expected `float` > 0.0 - at `$.quantity`" in r for r in rejected)
    assert any("Expected `float`, got `str` - at `$.quantity`" in r for r in rejected)
    valid = [msgspec.json.decode(m.value) for m in produce.load(fs, files) if m.key is not None]
    assert all(isinstance(v["quantity"], float) for v in valid), "valid CSV rows are published typed"
