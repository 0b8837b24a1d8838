"""`make bench`: every benchmark in one run on this machine, written to BENCHMARKS.md.

Each benchmark runs as its own process under GNU time, so the report carries the exact
command, its output (medians and ratios of repeated runs) and the peak resident memory of the
largest process it started. Each section says when and on how many cores it was measured, so
`--only` can rerun some benchmarks and replace just their sections, leaving the others (and
their dates) as they are:

    .venv/bin/python bench/run.py                          # all of them, a new BENCHMARKS.md
    .venv/bin/python bench/run.py --only latency,workers   # titles containing either word
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "BENCHMARKS.md"
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
    (
        "Materialize on 1 and 2 workers (fraud, all cores)",
        [PY, "bench/bench_workers.py", "--use-case", "fraud", "--size", "200000", "--workers", "1,2", "--repeats", "3"],
    ),
    ("Bulk load of store history", [PY, "bench/bench_store_bulk.py", "--sales", "3000000", "--days", "730"]),
    (
        "Training time per model (fraud, default size)",
        [PY, "bench/bench_train.py", "--use-case", "fraud", "--repeats", "3"],
    ),
    (
        "Latency of a fraud decision on the local broker (1,000 payments/s, merchant risk from the table)",
        [PY, "bench/bench_live.py", "--parts", "latency", "--repeats", "3", "--intervals", "0.05"],
    ),
    (
        "Feature-process throughput on the local broker: partitions and replicas (fraud)",
        [PY, "bench/bench_live.py", "--parts", "features", "--tp-repeats", "2"],
    ),
    ("Scorer throughput on the local broker (fraud)", [PY, "bench/bench_live.py", "--parts", "scorer"]),
    (
        "Reason codes on fraud decisions: cost per decision and live p50 at 1,000 payments/s",
        [PY, "bench/bench_reasons.py"],
    ),
]


def run(title: str, command: list[str]) -> str:
    """One benchmark's section: title, when and where, the command, its status and output."""
    measured = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
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
        f"## {title}\n\nMeasured on {measured}, {os.cpu_count()} cores.\n\n"
        f"`{shown}` — {status}, {seconds:,.0f} s wall, peak RSS of the largest process {peak_mb}\n\n"
        f"```\n{body}\n```\n"
    )


def sections(text: str) -> dict[str, str]:
    """The `## ` sections of a report by title, each with its heading; fenced blocks are skipped."""
    found: dict[str, str] = {}
    title, lines, fenced = None, [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        if line.startswith("## ") and not fenced:
            if title is not None:
                found[title] = "".join(lines).rstrip("\n") + "\n"
            title, lines = line[3:].strip(), []
        if title is not None:
            lines.append(line)
    if title is not None:
        found[title] = "".join(lines).rstrip("\n") + "\n"
    return found


def dated(kept: dict[str, str], report: str) -> dict[str, str]:
    """Kept sections, each saying when it was measured: a section of a report written before
    sections carried their own date gets the date of that report's header."""
    header = re.search(r"on (\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC", report.split("\n## ", 1)[0])
    when = f"Measured on {header.group(1)} UTC (the date of the whole report then).\n\n" if header else ""
    out = {}
    for title, body in kept.items():
        heading, _, rest = body.partition("\n\n")
        out[title] = body if rest.startswith("Measured on ") or not when else f"{heading}\n\n{when}{rest}"
    return out


def selected(only: str | None) -> list[tuple[str, list[str]]]:
    """The benchmarks whose title contains one of the comma-separated words of `only` (any case)."""
    if only is None:
        return BENCHMARKS
    words = [w.strip().lower() for w in only.split(",") if w.strip()]
    chosen = [(t, c) for t, c in BENCHMARKS if any(w in t.lower() for w in words)]
    if not chosen:
        titles = "\n  ".join(t for t, _ in BENCHMARKS)
        raise SystemExit(f"--only {only!r} matches no benchmark title; the titles are:\n  {titles}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only",
        metavar="SUBSTRING[,SUBSTRING]",
        help="run only the benchmarks whose title contains one of these (any case) and replace just their "
        "sections of the existing BENCHMARKS.md",
    )
    args = parser.parse_args()
    chosen = selected(args.only)
    previous = REPORT.read_text() if args.only is not None and REPORT.exists() else ""
    kept = dated(sections(previous), previous)
    fresh = {}
    for title, command in chosen:
        print(f"running: {title}", flush=True)
        fresh[title] = run(title, command)
    ordered = [fresh.get(title) or kept.get(title) for title, _ in BENCHMARKS]
    known = {title for title, _ in BENCHMARKS}
    ordered += [body for title, body in kept.items() if title not in known]
    header = (
        "# Benchmarks\n\n"
        f"Measured by `make bench` (`bench/run.py`; `--only` reruns some sections) on {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}; each section says when. Figures are medians "
        "of repeated runs within one run of a benchmark; compare ratios, not absolute numbers, across machines.\n\n"
    )
    REPORT.write_text(header + "\n".join(s for s in ordered if s))
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
