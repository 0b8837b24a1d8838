"""Bulk load of years of store history through the store FeatureSet into DuckDB: throughput and memory.

Simulates the chain's feeds once into a temporary folder (POS receipt lines, deliveries, stock
counts, price changes, day closes, with their faulty records), then materializes them in a fresh
process with the progress bar `samestream materialize` draws, so the peak memory reported is the
load's alone. Prints records read per second (every feed, faulty records included), feature rows
written per second, and the peak resident memory of the load.

    python bench/bench_store_bulk.py --sales 8000000 --days 730
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def materialize_in_child(folder: str, db: str) -> dict[str, Any]:
    """Run in a spawned process: load the folder into `db` with a progress bar; report the run."""
    from features.usecases import build_featureset, get_use_case
    from training.cli import progress_bar
    from training.materialize import materialize
    from training.replay import sources_in

    fs = build_featureset("store", Path(folder), "bench-secret")
    sources = sources_in(get_use_case("store").files, Path(folder))
    tasks: dict[str, Any] = {}
    started = time.perf_counter()
    with progress_bar() as bar:

        def advance(step: str, n: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.advance(tasks[step], n)

        report = materialize(fs, sources, db, progress=advance)
    return {
        "seconds": time.perf_counter() - started,
        "events": report.events_read,
        "rows": report.rows_written,
        "labels": report.labels_written,
        "dead_letters": report.dead_letters,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sales", type=int, default=8_000_000, help="POS receipt lines to simulate (about)")
    parser.add_argument("--days", type=int, default=730, help="days of history")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    from training.cli import progress_bar
    from training.simulators.store import simulate_store

    with tempfile.TemporaryDirectory(prefix="bench-store-bulk-") as tmp:
        folder = Path(tmp) / "store"
        started = time.perf_counter()
        with progress_bar() as bar:
            task = bar.add_task("simulate", total=args.sales)
            sim = simulate_store(
                folder, n_sales=args.sales, days=args.days, seed=args.seed, progress=lambda n: bar.advance(task, n)
            )
        simulated = time.perf_counter() - started
        size_mb = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            run = pool.apply(materialize_in_child, (str(folder), str(Path(tmp) / "bench.duckdb")))
        db_mb = (Path(tmp) / "bench.duckdb").stat().st_size / 1e6

    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"history: {sim.n_stores} stores × {sim.n_products} products × {sim.days} days; {sim.n_sales:,} receipt lines, "
        f"{run['events']:,} records in all ({size_mb:,.0f} MB of files), simulated in {simulated:.0f} s"
    )
    print(
        "| records read | feature rows | labels | dead letters | s | records/s | feature rows/s | peak RSS | DuckDB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {run['events']:,} | {run['rows']:,} | {run['labels']:,} | {run['dead_letters']:,} | {run['seconds']:.0f} | "
        f"{run['events'] / run['seconds']:,.0f} | {run['rows'] / run['seconds']:,.0f} | "
        f"{run['peak_rss_mb'] / 1024:.1f} GB | {db_mb:,.0f} MB |"
    )


if __name__ == "__main__":
    main()
