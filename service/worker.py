"""The worker loop: claim a queued search with a lease, run it, keep the lease alive, release it.

A worker claims one search at a time (``Repository.claim_search``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a
conditional update on SQLite), renews its lease from a heartbeat thread every third of the lease, and releases it
when the search ends. The heartbeat is also how a worker learns its search was cancelled (the search's status) or
that it lost the lease (its process stalled past the lease and another worker took the search over). A worker that
dies simply stops renewing: after the lease expires another worker claims the search and resumes it from the
database. ``shutdown()`` (SIGTERM) stops the running trials, puts the search back in the queue and exits; trials
already finished are in the database and are kept.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brainsearch.errors import BrainsearchError
from brainsearch.search.driver import SearchDriver, StopKind
from brainsearch.search.submission import Progress
from brainsearch.storage import Repository, Search

__all__ = ["Worker"]

log = logging.getLogger("brainsearch.worker")


class Worker:
    """Runs queued searches from the database one after another."""

    def __init__(
        self,
        repo: Repository,
        database_url: str,
        *,
        name: str | None = None,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        on_progress: Callable[[Progress], None] | None = None,
        options: dict[str, Any] | None = None,
        data_dir: Path,
    ) -> None:
        self.repo, self.database_url = repo, database_url
        self.data_dir = data_dir  # where runs keep their files and corpus caches
        self.options = options  # e.g. {"executor": "ray", "ray_address": ...}: how this worker runs every search
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease_seconds, self.poll_seconds = lease_seconds, poll_seconds
        self.on_progress = on_progress
        self._shutdown = threading.Event()
        self.current: int | None = None  # the search being run

    def shutdown(self) -> None:
        """Stop soon: the running search goes back to the queue (its finished trials kept)."""
        self._shutdown.set()

    def run_once(self) -> Search | None:
        """Claim and run one search to its end; None when the queue is empty."""
        search = self.repo.claim_search(self.name, self.lease_seconds)
        if search is None:
            return None
        self.current = search.id
        stop: dict[str, StopKind | None] = {"kind": None}
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(search.id, stop, done), daemon=True)
        beat.start()

        def should_stop() -> StopKind | None:
            return "requeue" if self._shutdown.is_set() and stop["kind"] is None else stop["kind"]

        log.info("worker %s runs search %d", self.name, search.id)
        try:
            driver = SearchDriver(
                self.repo,
                search.id,
                self.database_url,
                on_progress=self.on_progress,
                on_note=lambda text: log.info("search %d: %s", search.id, text),
                should_stop=should_stop,
                options=self.options,
                data_dir=self.data_dir,
            )
            result = driver.run()
        except BrainsearchError as exc:  # the driver marked the search failed; the worker goes on
            log.warning("search %d failed: %s", search.id, exc)
            result = self.repo.get_search(search.id) or search
        finally:
            done.set()
            beat.join()
            if stop["kind"] != "lost":
                self.repo.release_search(search.id, self.name, requeue=should_stop() == "requeue")
            self.current = None
        return self.repo.get_search(search.id) or result

    def _heartbeat(self, search_id: int, stop: dict[str, StopKind | None], done: threading.Event) -> None:
        while not done.wait(self.lease_seconds / 3):
            try:
                search = self.repo.renew_lease(search_id, self.name, self.lease_seconds)
            except BrainsearchError as exc:  # the database is briefly unreachable: try again at the next beat
                log.warning("heartbeat of search %d failed: %s", search_id, exc)
                continue
            if search is None:
                stop["kind"] = "lost"
            elif search.status == "cancelled":
                stop["kind"] = "cancel"

    def run_forever(self) -> None:
        """Run searches until :meth:`shutdown`; idle, poll the queue every ``poll_seconds``."""
        while not self._shutdown.is_set():
            if self.run_once() is None:
                self._shutdown.wait(self.poll_seconds)
