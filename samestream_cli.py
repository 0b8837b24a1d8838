"""`samestream`: one command line for the batch and live sides of every use case."""

from __future__ import annotations

import os
import sys
import warnings

import authlib.deprecate
import typer
from rich.console import Console

# quixstreams imports confluent-kafka's schema-registry client, which imports authlib's httpx
# integration, which warns that it is deprecated: nothing a user of this command can act on.
# authlib's own module installs an "always" filter for its warnings when first imported, so
# the "ignore" filter goes after that import, scoped to that category and message.
warnings.filterwarnings(
    "ignore", message="The httpx module is deprecated", category=authlib.deprecate.AuthlibDeprecationWarning
)

# MLflow's progress notes (creating tables, an experiment, a model) are INFO lines on stderr, and
# it draws a progress bar for every artifact it downloads; the commands print their own summary.
# MLFLOW_LOGGING_LEVEL=INFO and MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true bring them back.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from serving.cli import app as serving_app  # noqa: E402
from training.cli import app as training_app  # noqa: E402
from training.store import DatabaseBusy  # noqa: E402

app = typer.Typer(
    name="samestream",
    help="One feature process for training and live scoring: simulate, materialize, train, score, serve.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.registered_commands.extend(training_app.registered_commands)
app.registered_commands.extend(serving_app.registered_commands)

USER_ERRORS = (FileNotFoundError, LookupError, ValueError, DatabaseBusy)
"""Errors that mean the input or setup is wrong: shown as one line a user can act on."""


def main() -> None:
    try:
        app()
    except USER_ERRORS as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
