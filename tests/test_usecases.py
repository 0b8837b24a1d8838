"""The use-case registry: a module registers its use case; commands find it by name."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from features.usecases import PLUGINS_ENV, USE_CASES, get_use_case, load_object, register_use_case


def test_a_plugin_module_named_in_the_environment_registers_its_use_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLUGINS_ENV, raising=False)
    monkeypatch.delitem(USE_CASES, "login", raising=False)
    monkeypatch.delitem(sys.modules, "tests.usecase_login", raising=False)
    with pytest.raises(ValueError, match="unknown use case 'login'; expected one of fraud, loan, store"):
        get_use_case("login")
    monkeypatch.setenv(PLUGINS_ENV, " tests.usecase_login , ")
    assert get_use_case("login").model_name == "login-risk"
    assert type(load_object(get_use_case("login").job)).__name__ == "LoginJob"


def test_a_taken_name_is_refused_unless_replaced() -> None:
    fraud = USE_CASES["fraud"]
    other = dataclasses.replace(fraud, job="elsewhere:JOB")
    with pytest.raises(ValueError, match="a use case named 'fraud' is registered already"):
        register_use_case(other)
    assert register_use_case(fraud) is fraud
    with pytest.raises(ValueError, match="names no training job"):
        register_use_case(dataclasses.replace(fraud, name="nojob", job=""))
    with pytest.raises(ValueError, match="an import path is `module:attribute`"):
        load_object("training.jobs.fraud.JOB")


@pytest.mark.slow
def test_the_command_line_knows_a_registered_use_case_and_names_an_unknown_one(tmp_path: Path) -> None:
    """In a new process, as a user runs it: `SAMESTREAM_USE_CASES` is all it takes."""
    root = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), PLUGINS_ENV: "tests.usecase_login"}
    command = [sys.executable, "-m", "samestream_cli", "simulate", "login", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, "--size", "5", "--days", "3"], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "login" / "logins.jsonl").stat().st_size > 0
    unknown = subprocess.run([*command[:4], "logon"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert unknown.returncode != 0 and "unknown use case 'logon'" in unknown.stderr
