"""Training time per candidate at a use case's default size: median fit seconds over repeats.

Simulates and materializes the default history once into a temporary folder, reads the
point-in-time training set, then fits every candidate `--repeats` times on it (no MLflow
logging, so only the fit is timed).

    python bench/bench_train.py --use-case fraud --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from features.usecases import build_featureset, get_use_case
from training.harness import windows_for
from training.jobs import TrainOptions, get_job
from training.materialize import materialize
from training.replay import sources_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--use-case", default="fraud")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    job = get_job(args.use_case)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        folder = Path(tmp) / args.use_case
        job.simulate(
            folder,
            size=args.size or job.default_size,
            days=job.default_days,
            seed=7,
            fmt="jsonl",
            advance=lambda _: None,
        )
        fs = build_featureset(args.use_case, folder, "bench-secret")
        db = Path(tmp) / "bench.duckdb"
        materialize(fs, sources_in(get_use_case(args.use_case).files, folder), db)
        task = job.task(fs, db, TrainOptions(model_name="bench", data_dir=folder))
        data = task.load(db, windows_for(db, fs, task.window_days))
        x = data.train[list(task.inputs())].to_numpy(dtype="float64")
        y = data.train["label"].to_numpy()
        print(f"command: python {' '.join(sys.argv)}")
        print(f"training rows: {len(x):,}, features: {x.shape[1]}")
        print("| use case | candidate | median fit s | min | max |")
        print("|---|---|---:|---:|---:|")
        for name in task.candidates(7):
            seconds = []
            for _ in range(args.repeats):
                estimator = task.candidates(7)[name]
                started = time.perf_counter()
                estimator.fit(x, y)
                seconds.append(time.perf_counter() - started)
            figures = (statistics.median(seconds), min(seconds), max(seconds))
            print(f"| {args.use_case} | {name} | " + " | ".join(f"{f:.1f}" for f in figures) + " |")


if __name__ == "__main__":
    main()
