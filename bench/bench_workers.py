"""Materialize on several processes: `materialize(..., workers=N)` for each N, the same history.

Simulates one fraud history, then materializes it into a new DuckDB file with each worker count
in `--workers`, `--repeats` times, the counts alternating within each repeat so every count
sees the same machine. Prints the median seconds and events/s per count and the speed-up of
each against the first count, all from this one run. No CPU pinning: the point is to use the
cores. With N workers the events are split into N shards by the hash of their key, each shard
replayed in a forked process into a DuckDB file of its own, then copied into the target; the
feed (labels) is folded once, before the fork.

The rows must not depend on the worker count: after the runs, every table each count wrote
(features, labels, dead letters, ordered by all columns) is compared with the first count's,
and the bench fails, naming the table and the first differing row, if any differs.

    python bench/bench_workers.py --size 500000 --workers 1,2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from features.usecases import build_featureset, get_use_case
from training.jobs import get_job
from training.materialize import materialize
from training.replay import sources_in
from training.store import table_names


def tables(db: Path, use_case: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the use case's features, labels and dead letters, in a canonical order."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            kind: con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
            for kind, name in table_names(use_case).items()
        }
    finally:
        con.close()


def compare(
    reference: dict[str, list[tuple[object, ...]]], other: dict[str, list[tuple[object, ...]]], what: str
) -> None:
    for kind, rows in reference.items():
        theirs = other[kind]
        if rows == theirs:
            continue
        first = next(
            (i for i, (a, b) in enumerate(zip(rows, theirs, strict=False)) if a != b), min(len(rows), len(theirs))
        )
        ours = rows[first] if first < len(rows) else None
        other_row = theirs[first] if first < len(theirs) else None
        raise SystemExit(
            f"{what}: table {kind} differs ({len(rows):,} rows against {len(theirs):,}); "
            f"first difference at row {first:,}: {ours} != {other_row}"
        )


def run(use_case: str, size: int, days: int | None, repeats: int, workers: list[int]) -> None:
    job = get_job(use_case)
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        folder = Path(tmp) / "data"
        started = time.perf_counter()
        job.simulate(folder, size=size, days=days or job.default_days, seed=7, fmt="jsonl", advance=lambda _: None)
        fs = build_featureset(use_case, folder, "bench-secret")
        sources = sources_in(get_use_case(use_case).files, folder)
        references = [folder / name for name in get_use_case(use_case).references]
        print(
            f"history: size {size:,} simulated in {time.perf_counter() - started:.0f} s; "
            f"{os.cpu_count()} cores, no CPU pinning"
        )
        seconds: dict[int, list[float]] = {n: [] for n in workers}
        events = rows = 0
        last_db: dict[int, Path] = {}
        for i in range(repeats):
            for n in workers:
                db = Path(tmp) / f"w{n}-{i}.duckdb"
                clock = time.perf_counter()
                report = materialize(fs, sources, db, workers=n, references=references)
                seconds[n].append(time.perf_counter() - clock)
                events, rows = report.events_read, report.rows_written
                last_db.setdefault(n, db)
                if db != last_db[n]:
                    db.unlink()  # one file per count is enough to compare
        reference = tables(last_db[workers[0]], use_case)
        for n in workers[1:]:
            compare(reference, tables(last_db[n], use_case), f"--workers {n} against --workers {workers[0]}")
        base = statistics.median(seconds[workers[0]])
        print(f"{events:,} events, {rows:,} feature rows; median of {repeats} runs, alternating")
        print("| workers | median s | min | max | events/s | speed-up vs " + f"{workers[0]} |")
        print("|---:|---:|---:|---:|---:|---:|")
        for n in workers:
            median = statistics.median(seconds[n])
            print(
                f"| {n} | {median:.1f} | {min(seconds[n]):.1f} | {max(seconds[n]):.1f} | {events / median:,.0f} | "
                f"{base / median:.2f} x |"
            )
        counts = ", ".join(str(n) for n in workers[1:])
        print(f"rows identical: every table of --workers {counts} equals --workers {workers[0]}'s, row for row")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--use-case", default="fraud")
    parser.add_argument("--size", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated; the first is the base")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    if not workers or min(workers) < 1:
        parser.error("--workers takes counts of at least 1, e.g. 1,2")
    print(f"command: python {' '.join(sys.argv)}")
    run(args.use_case, args.size, args.days, args.repeats, workers)


if __name__ == "__main__":
    main()
