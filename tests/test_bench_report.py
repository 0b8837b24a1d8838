"""bench/run.py --only: the chosen sections are replaced, the others kept with their dates."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
OLD_REPORT = """# Benchmarks

Measured by `make bench` on 2026-11-29 04:02 UTC, 2 cores, Python 3.11.7. Figures are medians.

## Materialization throughput (fraud, one core)

`.venv/bin/python bench/bench_materialize.py` — ok

```
| use case | format |
## not a heading: inside the output
```

## Scorer throughput on the local broker (fraud)

Measured on 2026-12-01 10:00 UTC, 2 cores.

```
old scorer figures
```

## A benchmark that no longer exists

```
kept as it was
```
"""


def _run_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _main(module: ModuleType, report: Path, monkeypatch: pytest.MonkeyPatch, *argv: str) -> list[str]:
    ran: list[str] = []

    def fake(title: str, command: list[str]) -> str:
        ran.append(title)
        return f"## {title}\n\nMeasured on NOW, 2 cores.\n\n```\nnew figures\n```\n"

    monkeypatch.setattr(module, "REPORT", report)
    monkeypatch.setattr(module, "run", fake)
    monkeypatch.setattr(sys, "argv", ["run.py", *argv])
    module.main()
    return ran


def test_only_replaces_the_matching_sections_and_dates_the_kept_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _run_module()
    report = tmp_path / "BENCHMARKS.md"
    report.write_text(OLD_REPORT)
    ran = _main(module, report, monkeypatch, "--only", "SCORER,workers")
    assert ran == ["Materialize on 1 and 2 workers (fraud, all cores)", "Scorer throughput on the local broker (fraud)"]
    found = module.sections(report.read_text())
    assert list(found) == [
        "Materialization throughput (fraud, one core)",
        "Materialize on 1 and 2 workers (fraud, all cores)",
        "Scorer throughput on the local broker (fraud)",
        "A benchmark that no longer exists",
    ]
    kept = found["Materialization throughput (fraud, one core)"]
    assert "Measured on 2026-11-29 04:02 UTC" in kept and "## not a heading: inside the output" in kept
    assert "new figures" in found["Scorer throughput on the local broker (fraud)"]
    assert "old scorer figures" not in report.read_text()
    assert "kept as it was" in found["A benchmark that no longer exists"]


def test_a_full_run_keeps_nothing_and_an_unknown_word_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = _run_module()
    report = tmp_path / "BENCHMARKS.md"
    report.write_text(OLD_REPORT)
    ran = _main(module, report, monkeypatch)
    assert ran == [title for title, _ in module.BENCHMARKS]
    assert list(module.sections(report.read_text())) == ran
    with pytest.raises(SystemExit, match="matches no benchmark title"):
        _main(module, report, monkeypatch, "--only", "no such benchmark")
