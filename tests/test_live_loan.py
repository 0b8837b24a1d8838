"""Loan offers live: events -> feature process -> scorer -> one offer per application on `loan-decisions`.

A small loan history is replayed onto Kafka with `samestream produce`, turned into feature rows
by the feature process and priced by `samestream serve loan` with a registered acceptance model
whose version carries a pricing policy of its own. Every offer must be the one
`features.loan.pricing.quote_row` gives offline with the same model version, and never below
that policy's floor; a challenger scored by the shadow harness must price the same way.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.loan import MODEL_INPUTS, RATE_FEATURE, PricingPolicy, quote_row
from features.usecases import build_featureset
from serving import produce
from serving.cli import app as cli_app
from serving.feature_process import FeatureProcess
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

MODEL = "loan-acceptance"
POLICY = PricingPolicy(floor=0.055, cap=0.2, step=0.005, funding_rate=0.03, lgd=0.55)
"""Not the default policy: the scorer must price with the one tagged on the model version."""
OFFER_FIELDS = {
    "application_id",
    "rate",
    "p_accept",
    "expected_value",
    "model",
    "version",
    "alias",
    "latency_ms",
    "model_ms",
    "decided_at",
}


@dataclass(frozen=True)
class LoanLive:
    data_dir: Path
    """Holds `loan/` as `--data-dir` expects."""
    rows: list[dict[str, Any]]
    """Batch feature rows of the applications."""
    events: int
    tracking_uri: str
    versions: dict[str, str]
    """`champion` (the served version) and `challenger`."""


@functools.cache
def loan_live() -> LoanLive:
    """A small loan history, its batch rows, and two acceptance models registered with POLICY."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from training import replay
    from training.pyfunc import ProbabilityModel
    from training.replay import Source
    from training.simulators.loan import simulate_loan

    data_dir = scratch_dir() / "data"
    sim = simulate_loan(data_dir / "loan", n_applications=400, days=45, seed=13, fmt="jsonl")
    fs = build_featureset("loan", sim.folder, SECRET)
    history = replay.load(fs, [Source(kind, path) for kind, path in sim.files.items()])
    rows, outcomes = [], {}
    for outcome in replay.run(fs, history):
        rows.extend(outcome.rows)
        outcomes.update({label["application_id"]: label for label in outcome.labels})
    frame = pd.DataFrame(rows)
    frame[RATE_FEATURE] = [outcomes[i]["offered_rate"] for i in frame["application_id"]]
    x = frame[list(MODEL_INPUTS)].astype("float64")
    y = np.array([outcomes[i]["accepted"] for i in frame["application_id"]], dtype=int)
    tracking_uri = registry_store()
    tags = {"use_case": "loan", "featureset_version": fs.version, **POLICY.as_params()}
    versions = {
        role: register_version(
            tracking_uri,
            MODEL,
            ProbabilityModel(
                make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1_000)).fit(x.to_numpy(), y),
                MODEL_INPUTS,
            ),
            x.head(20),
            tags,
            alias=role,
        )
        for role, c in (("champion", 1.0), ("challenger", 0.01))
    }
    events = sum(1 for path in sim.files.values() for _ in produce.read_payloads(path))
    return LoanLive(data_dir, rows, events, tracking_uri, versions)


def offline_quotes(version: str) -> dict[str, dict[str, float]]:
    """What `quote_row` offers each batch row with the registered model, as an offer's fields."""
    live = loan_live()
    mlflow.set_tracking_uri(live.tracking_uri)
    mlflow.set_registry_uri(live.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    quotes = {}
    for row in live.rows:
        quote = quote_row(row, lambda x: pyfunc.predict(pd.DataFrame(x, columns=list(MODEL_INPUTS))), POLICY)
        quotes[row["application_id"]] = {"rate": quote.rate, "p_accept": quote.p_accept, "ev": quote.expected_value}
    return quotes


def assert_offers_match(offers: list[dict[str, Any]], version: str) -> None:
    expected = offline_quotes(version)
    assert Counter(o["application_id"] for o in offers) == Counter(list(expected)), "not one offer per application"
    for offer in offers:
        quote = expected[offer["application_id"]]
        assert offer["rate"] >= POLICY.floor
        assert offer["rate"] == quote["rate"], offer
        assert offer["p_accept"] == pytest.approx(quote["p_accept"], rel=1e-9)
        assert offer["expected_value"] == pytest.approx(quote["ev"], rel=1e-9)
        assert (offer["model"], offer["version"]) == (MODEL, version)
        assert offer["latency_ms"] > 0 and (offer["model_ms"] is None or offer["model_ms"] > 0)


def test_each_application_gets_one_offer_priced_as_offline_and_challengers_shadow_it(tmp_path: Path) -> None:
    live = loan_live()
    fs = build_featureset("loan", live.data_dir / "loan", SECRET)
    settings = live_settings(unique_prefix("loan-offers"), "loan")
    runner = CliRunner()
    common = ["--data-dir", str(live.data_dir), "--secret", SECRET, "--topic-prefix", settings.prefix]
    published = runner.invoke(
        cli_app, ["produce", "loan", "--data-dir", str(live.data_dir), "--topic-prefix", settings.prefix]
    )
    assert published.exit_code == 0, published.output

    counts = FeatureProcess(fs, settings).run(idle_timeout=60, max_events=live.events)
    assert counts.rows == len(live.rows) and sum(counts.dead.values()) == 0, counts.summary()

    served = runner.invoke(
        cli_app,
        [
            "serve",
            "loan",
            *common,
            "--tracking-uri",
            live.tracking_uri,
            "--state-dir",
            str(tmp_path / "state"),
            "--stop-after-idle",
            "5",
        ],
    )
    assert served.exit_code == 0, served.output
    said = " ".join(served.output.split())
    assert f"{MODEL} v{live.versions['champion']}" in said and "rates 5.50% to 20.00% in steps of 0.50%" in said

    decisions = read_topic(settings.topics.decisions)
    assert all(key == value["application_id"] for key, value in decisions)
    offers = [value for _, value in decisions]
    assert_offers_match(offers, live.versions["champion"])
    assert all(o["model_ms"] is not None for o in offers), "the champion times every offer"
    assert {o["rate"] for o in offers} != {POLICY.floor}, "every offer at the floor: the grid was not searched"
    assert all(set(o) == OFFER_FIELDS for o in offers), "an offer carries ids and numbers, nothing else"

    live_db = tmp_path / "live.duckdb"
    shadow_challenger(settings, live.data_dir / "loan", live.tracking_uri, MODEL, live_db)
    shadowed = read_scores(settings.topics.shadow_scores)
    assert all(s["error"] is None for s in shadowed)
    assert any(s["model_ms"] is not None for s in shadowed), "a challenger times a sample of its rows"
    assert_offers_match([{k: v for k, v in s.items() if k != "error"} for s in shadowed], live.versions["challenger"])

    recorded = recorded_scores(live_db, "loan")
    n = len(live.rows)
    assert recorded == {
        ("champion", live.versions["champion"]): (n, n),
        ("challenger", live.versions["challenger"]): (n, n),
    }
    client = MlflowClient(tracking_uri=live.tracking_uri)
    experiment = client.get_experiment_by_name("loan-live")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.stream = '{settings.topics.features}'")
    assert len(runs) == 2
    for run in runs:
        assert {"latency_p50_ms", "agreement_with_champion", "errors"} <= set(run.data.metrics)
        assert "average_precision" not in run.data.metrics, "loan labels do not rank offers"
    assert_no_personal_data(settings.prefix, personal_values(fs, produce.default_files("loan", live.data_dir / "loan")))
