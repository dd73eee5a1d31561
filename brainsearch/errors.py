"""The brainsearch exception tree.

Every error brainsearch raises on purpose derives from :class:`BrainsearchError`, so a caller (the CLI, the REST
service) can catch one type at its edge and turn it into an exit code or an HTTP status. Errors about user input carry
a list of :class:`Problem` s, each naming where the problem is (a file and a dotted field path) and what it is.

    BrainsearchError
    ├── InputError                 bad user input; CLI exit 2, HTTP 4xx
    │   ├── SpaceError             a search-space document that does not load or validate
    │   ├── ArchitectureError      an Architecture document that does not validate
    │   ├── DataError              a corpus that is missing, empty, too short or of the wrong type
    │   └── TrialNotFound          a pick (id, number, rank) that matches no trial of a search
    ├── ResourceError              the hardware cannot hold a run (NoPlanFits, NotEnoughDevices)
    ├── StorageError               a database operation failed (any backend), translated at one choke point
    └── ConflictError              a request that contradicts stored state (an idempotency key reused differently)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ArchitectureError",
    "BrainsearchError",
    "ConflictError",
    "DataError",
    "InputError",
    "Problem",
    "ResourceError",
    "SpaceError",
    "StorageError",
    "TrialNotFound",
]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (file, dotted path, line) and what."""

    path: str
    message: str
    source: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        """``FILE:LINE: dotted.path: message``, each part only where known (a whole file's problem names no path,
        a flag's names no file); one line, whatever the message held (parsers' messages span lines)."""
        where = self.source
        if self.line is not None:
            where = f"{self.source}:{self.line}" if self.source else f"line {self.line}"
        return ": ".join(part for part in (where, self.path, " ".join(self.message.split())) if part)


class BrainsearchError(Exception):
    """Root of every error that brainsearch raises deliberately."""


class InputError(BrainsearchError, ValueError):
    """User input that cannot be used; carries one :class:`Problem` per thing wrong."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid input")


class SpaceError(InputError):
    """A search-space document that does not parse, validate, or fit its own constraints."""


class ArchitectureError(InputError):
    """An Architecture document that does not validate."""


class DataError(InputError):
    """Training data that cannot be used: missing path, empty corpus, too short for one batch, wrong dtype."""


class TrialNotFound(InputError):
    """No trial of a search matches a pick (:meth:`Repository.pick_trial`): one problem at the selector asked
    (``trial_id``, ``number`` or ``rank``), whose message says what was asked and how many completed trials the
    search has. The CLI names its option, the API answers 404."""

    def __init__(self, selector: str, message: str) -> None:
        super().__init__([Problem(selector, message)])
        self.selector, self.message = selector, message


class ResourceError(BrainsearchError, ValueError):
    """The hardware cannot hold a run: no memory plan fits a device (:class:`~brainsearch.arch.plan.NoPlanFits`), or
    the cluster has too few devices (:class:`~brainsearch.arch.devices.NotEnoughDevices`)."""


class StorageError(BrainsearchError):
    """A database operation failed; the message names the backend and what went wrong."""


class ConflictError(BrainsearchError):
    """A request that contradicts what is stored, such as an idempotency key reused with another body."""
