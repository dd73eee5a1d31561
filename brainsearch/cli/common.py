"""What the commands share: the consoles, bad input as exit status 2 (one line per problem), the options that name
a search, a database and a service, and opening the database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperOption

from brainsearch.errors import Problem

if TYPE_CHECKING:
    from brainsearch.space import SearchSpace
    from brainsearch.storage import Repository, Search
    from brainsearch.store import RunStore

__all__ = [
    "EXIT_BAD_INPUT",
    "DbOption",
    "SearchIdArgument",
    "ServerOption",
    "TokenOption",
    "check_writable",
    "data_dir",
    "err",
    "fail",
    "open_repository",
    "out",
    "read_space",
    "run_store",
    "search_or_fail",
]

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

EXIT_BAD_INPUT = 2

SearchIdArgument = Annotated[int, typer.Argument(metavar="SEARCH_ID", help="The search.")]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default: $BRAINSEARCH_DATABASE_URL, else SQLite in the data directory)."),
]
ServerOption = Annotated[
    str | None, typer.Option("--server", envvar="BRAINSEARCH_SERVER", help="A brainsearch service's URL.")
]
TokenOption = Annotated[
    str | None, typer.Option("--token", envvar="BRAINSEARCH_API_TOKEN", help="Bearer token of the service.")
]


_typer_display_type: Any = getattr(TyperOption, "display_type_rich", None)


def _display_type(self: TyperOption, ctx: Any) -> str | None:
    # Typer 0.29's help shows every option's type, flags included ("--json <bool>", "--help <bool>"), as if a flag
    # took a value; a flag's row shows none. Earlier versions have no such hook and show no type for a flag.
    return None if self.is_flag else _typer_display_type(self, ctx)


if _typer_display_type is not None:
    setattr(TyperOption, "display_type_rich", _display_type)  # noqa: B010 (the hook is not in every version)


def fail(problems: tuple[Problem, ...] | list[Problem]) -> typer.Exit:
    """Print one line per problem on stderr; the exit (status 2) for the caller to raise."""
    for problem in problems:
        err.print(str(problem), markup=False, highlight=False)
    return typer.Exit(EXIT_BAD_INPUT)


def open_repository(db: str | None) -> tuple[Repository, str]:
    """The repository on ``db`` (schema migrated) and the URL the trials' workers use; a database that cannot be
    used is bad input (``--db``), not a traceback."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from brainsearch.settings import get_settings
    from brainsearch.storage import Repository, make_engine, migrate

    url = db or get_settings().resolved_database_url
    try:
        engine = make_engine(url)
        migrate(engine)
    except (ArgumentError, SQLAlchemyError, OSError) as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else exc.__class__.__name__
        raise fail([Problem("--db", f"cannot use database {url!r}: {first}")]) from None
    return Repository(engine), engine.url.render_as_string(hide_password=False)


def search_or_fail(repo: Repository, search_id: int) -> Search:
    """The stored search, or exit 2 naming the database it is not in."""
    search = repo.get_search(search_id)
    if search is None:
        raise fail([Problem("SEARCH_ID", f"no search {search_id} in {repo.engine.url!r}")])
    return search


def data_dir() -> Path:
    """The data directory of this process's settings (``BRAINSEARCH_DATA_DIR``)."""
    from brainsearch.settings import get_settings

    return get_settings().data_dir


def run_store(database: Repository | str) -> RunStore:
    """The run store (weights, checkpoints, exports) of a repository, or of a database id (a service's), under the
    settings' data directory."""
    from brainsearch.store import RunStore

    return RunStore(data_dir(), database) if isinstance(database, str) else RunStore.of(data_dir(), database)


def read_space(path: str | Path) -> SearchSpace:
    """A space file or bundled space name, checked against this process's ceiling (``BRAINSEARCH_MAX_SPACE_PARAMS``)."""
    from brainsearch.settings import get_settings
    from brainsearch.space import load_space

    return load_space(path, max_params=get_settings().max_space_params)


def check_writable(path: Path, suffix: str) -> None:
    """Before long work: ``path`` ends in ``suffix``, is not a folder and its folder can be written."""
    import os

    if path.suffix != suffix:
        raise fail([Problem("--output", f"expected a {suffix} path, got {path}")])
    if path.is_dir():
        raise fail([Problem("--output", f"{path} is a folder")])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail([Problem("--output", f"cannot create {path.parent}: {exc.strerror or exc}")]) from None
    if not os.access(path.parent, os.W_OK):
        raise fail([Problem("--output", f"cannot write to {path.parent}")])
