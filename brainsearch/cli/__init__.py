"""The ``brainsearch`` command: the Typer app, its commands in the order ``--help`` lists them, and ``main``.

Bad input exits with status 2 and one line per problem, ``FILE: dotted.path: message``, on stderr; never a
traceback. Heavy imports (torch, the service) happen inside the commands that need them.

The commands live by group: :mod:`~brainsearch.cli.spec` (validate, sample, cost), :mod:`~brainsearch.cli.training`
(train, expand), :mod:`~brainsearch.cli.searches` (search, resume, leaderboard, scale-up, delete),
:mod:`~brainsearch.cli.export`, :mod:`~brainsearch.cli.quickstart` and :mod:`~brainsearch.cli.service` (serve,
worker, submit, status); what they share is in :mod:`~brainsearch.cli.common` (consoles, exit 2, options, the
database), :mod:`~brainsearch.cli.render` (tables) and :mod:`~brainsearch.cli.progress` (the progress bar).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from brainsearch import __version__
from brainsearch.cli import export, quickstart, searches, service, spec, training
from brainsearch.cli.common import EXIT_BAD_INPUT, err, fail, out
from brainsearch.errors import BrainsearchError, Problem

__all__ = ["app", "main"]

app = typer.Typer(
    name="brainsearch",
    help="Neural architecture search for Brainformer-style Mixture-of-Experts blocks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        out.print(f"brainsearch {__version__}", markup=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Neural architecture search for Brainformer-style Mixture-of-Experts blocks."""


for _name, _command in (
    ("validate", spec.validate_cmd),
    ("sample", spec.sample_cmd),
    ("cost", spec.cost_cmd),
    ("train", training.train_cmd),
    ("search", searches.search_cmd),
    ("resume", searches.resume_cmd),
    ("leaderboard", searches.leaderboard_cmd),
    ("submit", service.submit_cmd),
    ("status", service.status_cmd),
    ("serve", service.serve_cmd),
    ("worker", service.worker_cmd),
    ("export", export.export_cmd),
    ("scale-up", searches.scale_up_cmd),
    ("delete", searches.delete_cmd),
    ("expand", training.expand_cmd),
    ("quickstart", quickstart.quickstart_cmd),
):
    app.command(_name)(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the Typer app, turning brainsearch errors into exit status 2 without a traceback."""
    try:
        # With standalone_mode off, click returns the code of a typer.Exit instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except BrainsearchError as exc:
        problems = getattr(exc, "problems", ()) or (Problem("", str(exc)),)
        code = fail(problems).exit_code
        sys.exit(code)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: unknown command, bad option value
        exc.show()  # type: ignore[attr-defined]
        sys.exit(EXIT_BAD_INPUT)
    except Exception as exc:  # a bug: one line, not a traceback, and a distinct exit status
        err.print(f"internal error: {type(exc).__name__}: {exc}", markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
