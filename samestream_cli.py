"""`samestream`: one command line for the batch and live sides of every use case."""

from __future__ import annotations

import typer

from training.cli import app as training_app

app = typer.Typer(
    name="samestream",
    help="One feature process for training and live scoring: simulate, materialize, train, score, serve.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.registered_commands.extend(training_app.registered_commands)

try:
    from serving.cli import app as serving_app
except ImportError:  # pragma: no cover - the live side is optional while it is being installed
    serving_app = None
if serving_app is not None:
    app.registered_commands.extend(serving_app.registered_commands)

if __name__ == "__main__":
    app()
