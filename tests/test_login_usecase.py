"""The fourth use case, account-login risk (`tests/usecase_login.py`), end to end through the
generic commands only: simulate, materialize, train, score and report on the batch side; on the
real broker, produce, features and serve, whose decisions equal the batch rows' decisions.

Nothing but the use case's module knows it: it is registered by `SAMESTREAM_USE_CASES`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import duckdb
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from features.usecases import PLUGINS_ENV, build_featureset, get_use_case
from tests.live_fixtures import (
    SECRET,
    assert_no_personal_data,
    broker,  # noqa: F401 - a fixture, used by name
    live_settings,
    read_topic,
    scratch_dir,
    unique_prefix,
)

pytestmark = pytest.mark.slow

MODEL = "login-risk"


@dataclass(frozen=True)
class LoginPipeline:
    root: Path
    data: Path
    db: Path
    tracking_uri: str
    logins: int
    outputs: dict[str, str]
    """Each command's output."""


def invoke(*args: str | Path) -> str:
    """Run one `samestream` command in this process; its output, or a failure showing it."""
    from samestream_cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (
        f"samestream {' '.join(map(str, args))} failed:\n{result.output}\n{result.exception!r}"
    )
    return result.output


@functools.cache
def login_pipeline() -> LoginPipeline:
    """The commands a user types for the login use case, once per session."""
    import os

    os.environ[PLUGINS_ENV] = "tests.usecase_login"
    root = scratch_dir()
    data, db, uri = root / "data", root / "login.duckdb", f"sqlite:///{root / 'login-mlflow.db'}"
    common = ("--data-dir", data, "--db", db)
    outputs = {
        "simulate": invoke("simulate", "login", "--data-dir", data, "--size", "80", "--days", "30"),
        "materialize": invoke("materialize", "login", *common, "--secret", SECRET),
        "train": invoke(
            "train",
            "login",
            *common,
            "--secret",
            SECRET,
            "--tracking-uri",
            uri,
            "--candidate",
            "logistic_regression",
            "--candidate",
            "xgboost",
        ),
        "score": invoke(
            "score",
            "login",
            "--data-dir",
            data,
            "--secret",
            SECRET,
            "--tracking-uri",
            uri,
            "--out",
            root / "scores.parquet",
        ),
        "report": invoke("report", "login", "--db", db, "--tracking-uri", uri, "--out", root / "login-report.html"),
    }
    logins = sum(1 for _ in (data / "login" / "logins.jsonl").open())
    return LoginPipeline(root, data, db, uri, logins, outputs)


def raw_personal_values(data: Path) -> set[str]:
    """The raw user ids and device ids of the simulated history."""
    import json

    values = set()
    for line in (data / "login" / "logins.jsonl").open():
        event = json.loads(line)
        values |= {event["user_id"], event["device_id"]}
    return values


def test_a_registered_use_case_runs_through_every_batch_command() -> None:
    p = login_pipeline()
    assert get_use_case("login").model_name == MODEL
    con = duckdb.connect(str(p.db), read_only=True)
    try:
        n_rows, n_users = con.execute("SELECT count(*), count(DISTINCT user) FROM login_features").fetchone()  # type: ignore[misc]
        n_labels, n_takeovers = con.execute("SELECT count(*), count_if(takeover) FROM login_labels").fetchone()  # type: ignore[misc]
        text = " ".join(
            str(v)
            for table in ("login_features", "login_labels", "login_dead_letters")
            for row in con.execute(f"SELECT * FROM {table}").fetchall()
            for v in row
        )
        intruder_rows = con.execute(
            "SELECT l.takeover, avg(new_country), avg(failures_in_row) FROM login_features f "
            "JOIN login_labels l USING (login_id) GROUP BY 1"
        ).fetchall()
    finally:
        con.close()
    assert n_rows == p.logins and n_labels == p.logins and n_users == 80 and n_takeovers > 0
    means = {takeover: (country, failures) for takeover, country, failures in intruder_rows}
    assert means[True][0] > 5 * means[False][0], "an intruder comes from a new country"
    assert means[True][1] > 5 * means[False][1], "an intruder fails in a row"
    leaked = [v for v in raw_personal_values(p.data) if v in text]
    assert not leaked, f"raw user or device ids in DuckDB: {leaked[:3]}"

    client = MlflowClient(tracking_uri=p.tracking_uri)
    champion = client.get_model_version_by_alias(MODEL, "champion")
    fs = build_featureset("login", p.data / "login", SECRET)
    assert champion.tags["use_case"] == "login" and champion.tags["featureset_version"] == fs.version
    assert 0.0 <= float(champion.tags["threshold"]) <= 1.0
    assert set(client.get_registered_model(MODEL).aliases) == {"champion", "challenger-logistic_regression"} or set(
        client.get_registered_model(MODEL).aliases
    ) == {"champion", "challenger-xgboost"}

    scores = pd.read_parquet(p.root / "scores.parquet")
    assert len(scores) > 0 and scores["score"].between(0, 1).all()
    assert not set(scores.select_dtypes("object").stack().astype(str)) & raw_personal_values(p.data)
    assert (p.root / "login-report.html").read_text().count(MODEL) > 0


@pytest.mark.kafka
@pytest.mark.usefixtures("broker")
def test_the_login_use_case_decides_live_as_on_the_batch_rows(tmp_path: Path) -> None:
    from serving.deciders import binary_decision
    from serving.feature_process import FeatureProcess

    p = login_pipeline()
    fs = build_featureset("login", p.data / "login", SECRET)
    settings = live_settings(unique_prefix("login"), "login")
    common = ("--data-dir", p.data, "--topic-prefix", settings.prefix)
    invoke("produce", "login", *common)
    events = p.logins * 2
    live_db = tmp_path / "live.duckdb"
    counts = FeatureProcess(fs, settings, db_path=live_db).run(idle_timeout=60, max_events=events)
    assert counts.rows == p.logins and sum(counts.dead.values()) == 0, counts.summary()
    invoke(
        "serve",
        "login",
        *common,
        "--secret",
        SECRET,
        "--tracking-uri",
        p.tracking_uri,
        "--state-dir",
        tmp_path / "state",
        "--stop-after-idle",
        "5",
    )

    con = duckdb.connect(str(p.db), read_only=True)
    try:
        batch = con.execute("SELECT * FROM login_features WHERE featureset_version = ?", [fs.version]).df()
    finally:
        con.close()
    con = duckdb.connect(str(live_db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM login_features").fetchone() == (p.logins,)
    finally:
        con.close()
    mlflow.set_tracking_uri(p.tracking_uri)
    champion = MlflowClient(tracking_uri=p.tracking_uri).get_model_version_by_alias(MODEL, "champion")
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{champion.version}")
    offline = model.predict(batch[list(fs.feature_names)].astype("float64"))
    threshold = float(champion.tags["threshold"])
    expected = {
        row_id: (score, binary_decision(float(score), threshold))
        for row_id, score in zip(batch["login_id"], offline, strict=True)
    }
    decisions = {key: value for key, value in read_topic(settings.topics.decisions)}
    assert set(decisions) == set(expected), "not one decision per login"
    for login_id, value in decisions.items():
        score, decision = expected[login_id]
        assert value["decision"] == decision and value["score"] == pytest.approx(float(score), rel=1e-9, abs=1e-12)
    assert {v["decision"] for v in decisions.values()} == {"alert", "pass"}
    assert_no_personal_data(settings.prefix, raw_personal_values(p.data))
