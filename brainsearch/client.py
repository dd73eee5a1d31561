"""A small client of the brainsearch REST API (what the CLI's ``--server`` commands use).

Errors a user can fix - an unreachable server, a refused token, a bad request, a trial that a pick does not find -
raise :class:`~brainsearch.errors.InputError` naming the option or the field, so the CLI exits 2 with one line each.
"""

from __future__ import annotations

from typing import Any

import httpx

from brainsearch.errors import InputError, Problem

__all__ = ["Client"]


class Client:
    """The ``/api/v1`` endpoints of one server, with an optional bearer token."""

    def __init__(self, server: str, token: str | None = None, timeout: float = 30.0) -> None:
        if not server.startswith(("http://", "https://")):
            raise InputError([Problem("--server", f"expected an http(s) URL, got {server!r}")])
        self.server, self.timeout = server.rstrip("/"), timeout
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _call(self, method: str, path: str, *, raw: bool = False, not_found: str | None = None, **kwargs: Any) -> Any:
        """The answer's JSON (its bytes with ``raw``); an error answer raises InputError, a 404 at the option
        ``not_found`` names when given (the server's message says what was not found)."""
        try:  # a connection per call: the CLI makes few calls and must leave no socket open
            with httpx.Client(base_url=f"{self.server}/api/v1", headers=self._headers, timeout=self.timeout) as http:
                r = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise InputError([Problem("--server", f"cannot reach {self.server}: {exc}")]) from None
        if r.status_code == 401:
            raise InputError([Problem("--token", "the server refused the token (or needs one)")])
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text[:300]
            if isinstance(detail, list):
                problems = [Problem(str(d.get("loc", "")), str(d.get("msg", d))) for d in detail if isinstance(d, dict)]
                raise InputError(problems or [Problem("", str(detail))])
            if r.status_code == 404 and not_found is not None:
                raise InputError([Problem(not_found, str(detail))])
            raise InputError([Problem("", f"{r.status_code} from the server: {detail}")])
        return r.content if raw else r.json()

    def health(self) -> dict[str, Any]:
        """The server's health: status, database backend, schema revision and the database's id."""
        result: dict[str, Any] = self._call("GET", "/healthz")
        return result

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a search; the created search."""
        result: dict[str, Any] = self._call("POST", "/searches", json=body)
        return result

    def search(self, search_id: int) -> dict[str, Any]:
        """A search with its progress."""
        result: dict[str, Any] = self._call("GET", f"/searches/{search_id}")
        return result

    def trials(self, search_id: int, **params: Any) -> dict[str, Any]:
        """A page of the leaderboard."""
        result: dict[str, Any] = self._call("GET", f"/searches/{search_id}/trials", params=params)
        return result

    def pick_trial(self, search_id: int, *, number: int | None = None, rank: int | None = None) -> dict[str, Any]:
        """The leaderboard row of the trial of a search with this number, or at this rank (1: the best completed
        trial, baselines unranked); give exactly one. No such trial raises InputError at ``--number`` or ``--rank``
        with the server's message: what was asked and how many completed trials the search has."""
        params = {k: v for k, v in (("number", number), ("rank", rank)) if v is not None}
        option = "--number" if number is not None else "--rank"
        result: dict[str, Any] = self._call("GET", f"/searches/{search_id}/trial", params=params, not_found=option)
        return result

    def export(self, trial_id: int) -> dict[str, Any]:
        """A trial's JSON export: architecture, cost, metrics."""
        result: dict[str, Any] = self._call("GET", f"/trials/{trial_id}/export", params={"format": "json"})
        return result

    def get_trial(self, trial_id: int) -> dict[str, Any]:
        """One trial in full."""
        result: dict[str, Any] = self._call("GET", f"/trials/{trial_id}")
        return result

    def download(self, trial_id: int, fmt: str) -> bytes:
        """A trial's export file as bytes (``json``, ``yaml``, ``pytorch`` or ``safetensors``)."""
        body: bytes = self._call("GET", f"/trials/{trial_id}/export", raw=True, params={"format": fmt})
        return body

    def add_scale_up(self, search_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a finished search again to run a scale-up stage (``{"scale_up": {...}, "top_k"?: N}``)."""
        result: dict[str, Any] = self._call("POST", f"/searches/{search_id}/scale-up", json=body)
        return result

    def delete(self, search_id: int) -> None:
        """Delete a finished search with its trials and files."""
        self._call("DELETE", f"/searches/{search_id}", raw=True)

    def scale_up(self, search_id: int, **params: Any) -> dict[str, Any]:
        """The scale-up report of a search (candidates per rung, fidelity, predictions)."""
        result: dict[str, Any] = self._call("GET", f"/searches/{search_id}/scale-up", params=params)
        return result
