"""Dependencies of the routers: the repository, the app's settings and run store, a search or a trial or 404 (one
message for the API and the dashboard), and the bearer-token checks."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator

from brainsearch.settings import Settings
from brainsearch.storage import Repository, Search, Trial
from brainsearch.store import RunStore

__all__ = [
    "MAX_ID",
    "FoundSearch",
    "FoundTrial",
    "Limit",
    "Offset",
    "ReadAccess",
    "Repo",
    "SearchId",
    "SettingsDep",
    "Store",
    "TrialId",
    "WholeNumber",
    "WriteAccess",
    "app_settings",
    "search_or_404",
    "trials_or_404",
]

# Ids and offsets are 64-bit signed integers in both databases: larger values are 422, not a driver overflow.
MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"[+-]?[0-9]+")


def _whole_number(value: object) -> object:
    # A path or query integer arrives as text: pydantic's lax int would also take "0.0"; the schema says integer.
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number, in digits")
    return value


WholeNumber = BeforeValidator(_whole_number)
SearchId = Annotated[int, WholeNumber, Path(ge=0, le=MAX_ID, description="a search's id")]
TrialId = Annotated[int, WholeNumber, Path(ge=0, le=MAX_ID, description="a trial's id")]
Offset = Annotated[int, WholeNumber, Query(ge=0, le=MAX_ID)]
Limit = Annotated[int, WholeNumber, Query(ge=1, le=500)]


def get_repo(request: Request) -> Repository:
    repo: Repository = request.app.state.repo
    return repo


def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> RunStore:
    """The run store (weights, exports) of this app's database, under the settings' data directory."""
    return RunStore.of(app_settings(request).data_dir, get_repo(request))


def search_or_404(repo: Repository, search_id: int) -> Search:
    """The stored search, or a 404 that says so (the same words from the API and the dashboard)."""
    search = repo.get_search(search_id)
    if search is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no search {search_id}")
    return search


def trials_or_404(repo: Repository, trial_ids: list[int]) -> list[Trial]:
    """The stored trials, or a 404 naming those that are not (the same words from the API and the dashboard)."""
    found = [repo.get_trial(i) for i in trial_ids]
    missing = [str(i) for i, t in zip(trial_ids, found, strict=True) if t is None]
    if missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no trial {', '.join(missing)}")
    return [t for t in found if t is not None]


# Declares the bearer scheme in the OpenAPI schema (Swagger's Authorize button, a generated client's token); the
# check itself is ours: a token is needed only when one is configured, and reads only with api_read_auth.
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="BRAINSEARCH_API_TOKEN: every non-GET route when it is set, GET routes too with api_read_auth",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]


def _check_token(credentials: HTTPAuthorizationCredentials | None, settings: Settings) -> None:
    token = settings.api_token
    if not token:
        return
    given = credentials.credentials.strip() if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
        )


def require_write(credentials: Credentials, settings: Annotated[Settings, Depends(app_settings)]) -> None:
    """Writes need the token whenever one is configured."""
    _check_token(credentials, settings)


def require_read(credentials: Credentials, settings: Annotated[Settings, Depends(app_settings)]) -> None:
    """Reads need it only when ``api_read_auth`` is set."""
    if settings.api_read_auth:
        _check_token(credentials, settings)


Repo = Annotated[Repository, Depends(get_repo)]
Store = Annotated[RunStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(app_settings)]


def _found_search(search_id: SearchId, repo: Repo) -> Search:
    return search_or_404(repo, search_id)


def _found_trial(trial_id: TrialId, repo: Repo) -> Trial:
    return trials_or_404(repo, [trial_id])[0]


# A route's ``{search_id}`` / ``{trial_id}`` resolved, or the 404 above. FastAPI runs a dependency before it checks
# the route's own query and body, so a route that has any calls search_or_404 / trials_or_404 itself, after them:
# bad input is a 422 whether or not the id exists.
FoundSearch = Annotated[Search, Depends(_found_search)]
FoundTrial = Annotated[Trial, Depends(_found_trial)]
WriteAccess = Depends(require_write)
ReadAccess = Depends(require_read)
