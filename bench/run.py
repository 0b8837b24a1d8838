"""`make bench`: every benchmark in one run on this machine, written to BENCHMARKS.md.

Each benchmark runs as its own process under GNU time, so the report carries the exact
command, its output (medians and ratios of repeated runs) and the peak resident memory of the
largest process it started.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

BENCHMARKS: list[tuple[str, list[str]]] = [
    (
        "Materialization throughput (fraud, one core)",
        [PY, "bench/bench_materialize.py", "--use-case", "fraud", "--size", "500000", "--repeats", "3"],
    ),
    (
        "Materialization throughput (loan, one core)",
        [
            PY,
            "bench/bench_materialize.py",
            "--use-case",
            "loan",
            "--size",
            "50000",
            "--repeats",
            "3",
            "--formats",
            "jsonl",
        ],
    ),
    (
        "Materialization throughput (store, one core)",
        [PY, "bench/bench_materialize.py", "--use-case", "store", "--repeats", "3", "--formats", "jsonl"],
    ),
    ("Bulk load of store history", [PY, "bench/bench_store_bulk.py", "--sales", "3000000", "--days", "730"]),
    (
        "Training time per model (fraud, default size)",
        [PY, "bench/bench_train.py", "--use-case", "fraud", "--repeats", "3"],
    ),
    ("Live path on the local broker (fraud)", [PY, "bench/bench_live.py"]),
]


def run(title: str, command: list[str]) -> str:
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
    )
    seconds = time.perf_counter() - started
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    peak_mb = f"{int(peak.group(1)) / 1024:,.0f} MB" if peak else "unknown"
    status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
    shown = " ".join(c if c != PY else ".venv/bin/python" for c in command)
    body = result.stdout.strip() if result.returncode == 0 else (result.stdout + result.stderr)[-4000:]
    return (
        f"## {title}\n\n`{shown}` — {status}, {seconds:,.0f} s wall, peak RSS of the largest process {peak_mb}\n\n"
        f"```\n{body}\n```\n"
    )


def main() -> None:
    sections = []
    for title, command in BENCHMARKS:
        print(f"running: {title}", flush=True)
        sections.append(run(title, command))
    header = (
        "# Benchmarks\n\n"
        f"Measured by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}. Figures are medians of repeated runs "
        "within one run of `make bench`; compare ratios, not absolute numbers, across machines.\n\n"
    )
    (ROOT / "BENCHMARKS.md").write_text(header + "\n".join(sections))
    print((ROOT / "BENCHMARKS.md").read_text())


if __name__ == "__main__":
    main()
