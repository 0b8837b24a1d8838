"""What `simulate` and `train` do for each use case, behind one small interface.

The command line stays generic: it resolves a use case's `Job` here and hands it the options.
A job simulates the use case's history and names its training `Task`; fitting, logging,
registering and summarizing are the harness's (`training.harness`), the same for every use case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rich.console import RenderableType

from features.featureset import FeatureSet
from features.usecases import get_use_case, load_object

if TYPE_CHECKING:
    from training.harness import Task

Advance = Callable[[int], None]


@dataclass(frozen=True)
class TrainOptions:
    """Everything `samestream train` passes on; dates left None are derived from the ones given."""

    model_name: str
    data_dir: Path = Path("data")
    """The use case's own folder of event and reference files (`<data dir>/<use case>`)."""
    candidates: tuple[str, ...] | None = None
    train_start: datetime | None = None
    validation_start: datetime | None = None
    train_end: datetime | None = None
    test_start: datetime | None = None
    test_end: datetime | None = None
    validation_fraction: float | None = None
    refit: bool = False
    """Register models fitted on the whole training window (validation chooses prequentially)."""
    seed: int = 7
    protocol: str = "samestream"
    """How the champion is chosen: `samestream` (one validation window) or `field` (prequential
    folds, `training.protocol`)."""
    top_k: int = 100
    """Cards an analyst team checks a day, for the field's card precision top-k."""
    folds: int = 4
    """Prequential train/validation pairs for the field protocol and for tuning."""
    tune_trials: int = 0
    """Hyperparameter trials per candidate on the prequential folds (0: the defaults, no search)."""
    ablation: bool = False
    """Refit the champion's candidate without each feature family in turn, and report the figures."""


class Job(Protocol):
    unit: str
    """What `--size` counts, e.g. "payments"."""
    default_size: int
    default_days: int

    def simulate(self, out_dir: Path, *, size: int, days: int, seed: int, fmt: str, advance: Advance) -> str:
        """Write the use case's event and reference files into `out_dir`; return a summary line."""
        ...

    def task(self, fs: FeatureSet, db: Path, options: TrainOptions) -> Task:
        """The use case's training task over the DuckDB file, for these options (its data folder,
        the field protocol's k)."""
        ...


def get_job(use_case: str) -> Job:
    """The job the use case's registry entry names (`features.usecases.UseCase.job`)."""
    job: Job = load_object(get_use_case(use_case).job)
    return job


def train(use_case: str, fs: FeatureSet, db: Path, options: TrainOptions, advance: Advance) -> RenderableType:
    """Fit, evaluate, log and register the use case's candidates; return the printed summary."""
    from training.harness import render, run, windows_for

    task = get_job(use_case).task(fs, db, options)
    windows = windows_for(
        db,
        fs,
        task.window_days,
        options.validation_fraction,
        train_start=options.train_start,
        validation_start=options.validation_start,
        train_end=options.train_end,
        test_start=options.test_start,
        test_end=options.test_end,
    )
    report = run(
        task,
        db,
        options.model_name,
        windows=windows,
        candidates=options.candidates,
        seed=options.seed,
        refit=options.refit,
        on_fitted=lambda _: advance(1),
        protocol=options.protocol,
        n_folds=options.folds,
        tune_trials=options.tune_trials,
        ablation=options.ablation,
    )
    return render(report, task)
