"""Store orders live: feeds (CSV ones included) -> feature process -> scorer -> `store-decisions`.

A small chain's feeds are replayed onto Kafka with `samestream produce`: the POS feed, price
changes and day closes as JSON lines, the warehouse's deliveries and the handhelds' stock counts
as CSV. The feature process must make the batch driver's rows of them and reject their faulty
records for the batch driver's reasons; the scorer must turn every row into the order and
markdown `features.store.policy.decide` gives offline with the same model version and spread.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.store.featureset import FEATURES
from features.store.policy import MARKDOWN_DEPTHS, Spread, decide, markdown_scenario
from features.usecases import build_featureset, get_use_case
from serving import produce
from serving.cli import app as cli_app
from serving.deciders import decider_for
from serving.feature_process import FeatureProcess
from serving.registry import ModelWatcher, Registry
from serving.scorer import ScoringProcess
from tests.live_fixtures import (
    SECRET,
    assert_no_personal_data,
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    personal_values,
    read_scores,
    read_topic,
    recorded_scores,
    register_version,
    registry_store,
    scratch_dir,
    shadow_challenger,
    unique_prefix,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.usefixtures("broker")]

MODEL = "store-demand"


@dataclass(frozen=True)
class StoreLive:
    data_dir: Path
    """Holds `store/` as `--data-dir` expects."""
    files: dict[str, Path]
    rows: list[dict[str, Any]]
    """Batch feature rows, each with `featureset_version`."""
    rejected: Counter[str]
    """Reasons the batch driver rejects records for."""
    events: int
    tracking_uri: str
    versions: dict[str, str]
    spreads: dict[str, Spread]
    """The spread each version is tagged with."""


@functools.cache
def store_live() -> StoreLive:
    """Five weeks of one store's feeds, their batch rows, and two forecasts registered as training does."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from training import replay
    from training.replay import sources_in
    from training.simulators.store import simulate_store
    from training.store_forecast import ForecastModel

    data_dir = scratch_dir() / "data"
    sim = simulate_store(data_dir / "store", n_sales=3_000, days=35, seed=3, fmt="jsonl")
    fs = build_featureset("store", sim.folder, SECRET)
    sources = sources_in(get_use_case("store").files, sim.folder)
    assert {s.kind: s.path.suffix for s in sources}.items() >= {"delivery": ".csv", "stock_count": ".csv"}.items()
    history = replay.load(fs, sources)
    rows, sold = [], {}
    rejected = Counter(letter.reason for letter in history.dead_letters)
    for outcome in replay.run(fs, history):
        rows.extend({**row, "featureset_version": fs.version} for row in outcome.rows)
        sold.update({label["row_id"]: label["units_sold"] for label in outcome.labels})
        if outcome.dead_letter is not None:
            rejected[outcome.dead_letter.reason] += 1
    assert rejected and any(r.startswith("negative stock") for r in rejected), "the CSV faults are in the test"
    labelled = [r for r in rows if r["row_id"] in sold]
    x = pd.DataFrame(labelled)[list(FEATURES)].astype("float64")
    y = np.array([sold[r["row_id"]] for r in labelled])
    tracking_uri = registry_store()
    versions, spreads = {}, {}
    for role, estimator in (
        ("champion", HistGradientBoostingRegressor(loss="poisson", max_iter=60, random_state=0)),
        ("challenger", make_pipeline(StandardScaler(), Ridge(alpha=1.0))),
    ):
        model = ForecastModel(estimator.fit(x.to_numpy(), y), FEATURES)
        fitted = Spread.fit(y, model.predict(None, x))
        model.spread = spreads[role] = Spread(tuple(round(q, 6) for q in fitted.quantiles))
        tags = {
            "use_case": "store",
            "featureset_version": fs.version,
            "spread_quantiles": json.dumps(model.spread.quantiles),
        }
        versions[role] = register_version(tracking_uri, MODEL, model, x.head(20), tags, alias=role)
    events = sum(1 for s in sources for _ in produce.read_payloads(s.path))
    files = {s.kind: s.path for s in sources}
    return StoreLive(data_dir, files, rows, rejected, events, tracking_uri, versions, spreads)


def offline_decisions(version: str, spread: Spread) -> dict[str, dict[str, float]]:
    """What `decide` makes of each batch row with the registered model's forecasts at each markdown depth."""
    live = store_live()
    mlflow.set_tracking_uri(live.tracking_uri)
    mlflow.set_registry_uri(live.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    out = {}
    for row in live.rows:
        scenarios = pd.DataFrame([markdown_scenario(row, depth) for depth in MARKDOWN_DEPTHS])[list(FEATURES)]
        forecasts = dict(zip(MARKDOWN_DEPTHS, pyfunc.predict(scenarios).tolist(), strict=True))
        decision = decide(
            forecasts,
            spread,
            row["on_hand"],
            row["expiring_1d"],
            row["price"],
            row["unit_cost"],
            int(row["shelf_life_days"]),
            0.1 if row["sold_by_weight"] > 0 else 1.0,
        )
        out[row["row_id"]] = {"forecast": forecasts[0.0], **asdict(decision)}
    return out


def assert_decisions_match(records: list[dict[str, Any]], version: str, spread: Spread) -> None:
    expected = offline_decisions(version, spread)
    assert Counter(r["row_id"] for r in records) == Counter(list(expected)), "not one decision per row"
    for record in records:
        want = expected[record["row_id"]]
        assert (record["order_qty"], record["markdown"]) == (want["order_qty"], want["markdown"]), record
        for name in ("forecast", "expected_sold", "expected_waste", "expected_margin"):
            assert record[name] == pytest.approx(want[name], rel=1e-9, abs=1e-9), (name, record)
        assert (record["model"], record["version"]) == (MODEL, version)


def test_feeds_with_csv_become_batch_rows_and_each_row_one_order_decided_as_offline(tmp_path: Path) -> None:
    live = store_live()
    fs = build_featureset("store", live.data_dir / "store", SECRET)
    settings = live_settings(unique_prefix("store-orders"), "store")
    published = CliRunner().invoke(
        cli_app,
        [
            "produce",
            "store",
            "--data-dir",
            str(live.data_dir),
            "--topic-prefix",
            settings.prefix,
            *(f"--events={kind}={path}" for kind, path in live.files.items()),
        ],
    )
    assert published.exit_code == 0, published.output

    counts = FeatureProcess(fs, settings).run(idle_timeout=60, max_events=live.events)
    assert counts.rows == len(live.rows), counts.summary()
    stream = {value["row_id"]: value for _, value in read_topic(settings.topics.features)}
    assert len(stream) == len(live.rows)
    assert [r for r in live.rows if stream[r["row_id"]] != r] == [], "stream rows differ from batch rows"
    letters = Counter(value["reason"] for _, value in read_topic(settings.topics.deadletters))
    assert letters == live.rejected, "the feature process rejects records for other reasons than batch"

    watcher = ModelWatcher(Registry(live.tracking_uri), MODEL, "champion", tuple(fs.columns), 5.0, decider_for("store"))
    assert watcher.start().policy == live.spreads["champion"]
    scored = ScoringProcess(fs, settings, watcher).run(idle_timeout=60, max_rows=len(live.rows))
    assert scored.scored == {live.versions["champion"]: len(live.rows)} and scored.dead == 0
    decisions = read_topic(settings.topics.decisions)
    assert all(key == value["row_id"] for key, value in decisions)
    records = [value for _, value in decisions]
    assert_decisions_match(records, live.versions["champion"], live.spreads["champion"])
    assert any(r["order_qty"] > 0 for r in records)

    live_db = tmp_path / "live.duckdb"
    shadow_challenger(settings, live.data_dir / "store", live.tracking_uri, MODEL, live_db)
    shadowed = read_scores(settings.topics.shadow_scores)
    assert all(s["error"] is None for s in shadowed)
    assert_decisions_match(shadowed, live.versions["challenger"], live.spreads["challenger"])
    recorded = recorded_scores(live_db, "store")
    n = len(live.rows)
    assert recorded == {
        ("champion", live.versions["champion"]): (n, n),
        ("challenger", live.versions["challenger"]): (n, n),
    }
    files = [produce.EventFile(kind, path) for kind, path in live.files.items()]
    assert_no_personal_data(settings.prefix, personal_values(fs, files))
