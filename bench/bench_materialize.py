"""Materialization throughput: events/s through a FeatureSet into a fresh DuckDB file, on one core.

Simulates the history once, then materializes it `--repeats` times into new DuckDB files, pinned
to one CPU, and prints the median, min and max events/s per input format.

    python bench/bench_materialize.py --use-case fraud --size 500000 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from features.usecases import build_featureset, get_use_case
from training.jobs import get_job
from training.materialize import materialize
from training.replay import sources_in


def run(use_case: str, size: int, days: int | None, repeats: int, formats: list[str]) -> list[dict[str, object]]:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    job = get_job(use_case)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-materialize-") as tmp:
        for fmt in formats:
            folder = Path(tmp) / fmt
            job.simulate(folder, size=size, days=days or job.default_days, seed=7, fmt=fmt, advance=lambda _: None)
            fs = build_featureset(use_case, folder, "bench-secret")
            sources = sources_in(get_use_case(use_case).files, folder)
            rates, seconds, events = [], [], 0
            for i in range(repeats):
                started = time.perf_counter()
                report = materialize(fs, sources, Path(tmp) / f"{fmt}-{i}.duckdb")
                seconds.append(time.perf_counter() - started)
                events = report.events_read
                rates.append(events / seconds[-1])
            results.append(
                {
                    "use_case": use_case,
                    "format": fmt,
                    "events": events,
                    "median_events_per_s": statistics.median(rates),
                    "min_events_per_s": min(rates),
                    "max_events_per_s": max(rates),
                    "median_seconds": statistics.median(seconds),
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--use-case", default="fraud")
    parser.add_argument("--size", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--formats", default="jsonl,parquet")
    args = parser.parse_args()
    results = run(args.use_case, args.size, args.days, args.repeats, args.formats.split(","))
    print(f"command: python {' '.join(sys.argv)}")
    print("| use case | format | events | median events/s | min | max | median s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['use_case']} | {r['format']} | {r['events']:,} | {r['median_events_per_s']:,.0f} | "
            f"{r['min_events_per_s']:,.0f} | {r['max_events_per_s']:,.0f} | {r['median_seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
