"""What `simulate` and `train` do for each use case, behind one small interface.

The command line stays generic: it resolves a use case's `Job` here and hands it the options.
A use case whose model is a classifier, a forecaster or a rate policy differs only in its job.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from rich.console import RenderableType

from features.featureset import FeatureSet

Advance = Callable[[int], None]


@dataclass(frozen=True)
class TrainOptions:
    """Everything `samestream train` passes on; dates left None take the job's defaults."""

    model_name: str
    data_dir: Path = Path("data")
    """The use case's own folder of event and reference files (`<data dir>/<use case>`)."""
    candidates: tuple[str, ...] | None = None
    train_start: datetime | None = None
    validation_start: datetime | None = None
    train_end: datetime | None = None
    test_start: datetime | None = None
    test_end: datetime | None = None
    seed: int = 7


class Job(Protocol):
    unit: str
    """What `--size` counts, e.g. "payments"."""
    default_size: int
    default_days: int

    def simulate(self, out_dir: Path, *, size: int, days: int, seed: int, fmt: str, advance: Advance) -> str:
        """Write the use case's event and reference files into `out_dir`; return a summary line."""
        ...

    def train(self, fs: FeatureSet, db: Path, options: TrainOptions, advance: Advance) -> RenderableType:
        """Fit, evaluate, log to the active MLflow store and register; return a report table."""
        ...


def get_job(use_case: str) -> Job:
    return importlib.import_module(f"training.jobs.{use_case}").JOB  # type: ignore[no-any-return]
