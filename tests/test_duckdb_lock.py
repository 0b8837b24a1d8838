"""A DuckDB file held open by another process (a notebook): wait and retry, say so clearly."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from training import store

pytestmark = pytest.mark.slow

HOLD = (
    "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); "
    "print('held', flush=True); time.sleep(float(sys.argv[2]))"
)


def hold(path: Path, seconds: float) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "f.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)")
    con.close()
    return path


def test_writer_waits_for_a_reader_to_let_go(db: Path) -> None:
    holder = hold(db, 2.5)
    started = time.monotonic()
    con = store.connect(db, retries=20, wait_s=0.5)
    waited = time.monotonic() - started
    con.execute("INSERT INTO t VALUES (1000)")
    con.close()
    holder.wait(timeout=30)
    assert waited >= 1.0
    assert duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM t").fetchone() == (1001,)


def test_a_lock_held_too_long_gives_a_clear_error_and_an_intact_file(db: Path) -> None:
    holder = hold(db, 30)
    try:
        with pytest.raises(store.DatabaseBusy, match="open in another process"):
            store.connect(db, retries=3, wait_s=0.2)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert duckdb.connect(str(db), read_only=True).execute("SELECT count(*) FROM t").fetchone() == (1000,)
