"""Optuna's RDB storage on brainsearch's database, with the repository's retries.

A search's Optuna study lives in the same database as its trials (``brainsearch-{id}``), so the sampler sees every
finished trial after a restart. The storage's calls wait out a briefly unreachable database like the repository's
do (:func:`brainsearch.storage.repository.retrying`): its public methods, and the private ones Optuna's cache layer
calls (``study.ask`` goes through ``_create_new_trial``, ``suggest_*`` through ``_set_trial_param``). Only the
outermost call of a thread retries, so nested calls do not multiply the wait.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import optuna

from brainsearch.storage.engine import make_engine, schema_lock
from brainsearch.storage.repository import RETRY_SECONDS, retrying

__all__ = ["optuna_storage"]


class _RetryingStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose calls are retried on transient database errors (methods set below)."""


_RETRYING = threading.local()
# What Optuna's _CachedStorage calls on the storage it wraps, besides the public API.
_CACHE_LAYER_CALLS = (
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    "_get_trials",
    "_set_trial_param",
)


def _retried(name: str) -> Callable[..., object]:
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def call(self: _RetryingStorage, *args: object, **kwargs: object) -> object:
        if getattr(_RETRYING, "active", False):
            return method(self, *args, **kwargs)
        _RETRYING.active = True
        try:
            return retrying(lambda: method(self, *args, **kwargs), RETRY_SECONDS, f"optuna {name}")
        finally:
            _RETRYING.active = False

    return call


for _name in [*(n for n in vars(optuna.storages.BaseStorage) if not n.startswith("_")), *_CACHE_LAYER_CALLS]:
    if callable(getattr(optuna.storages.RDBStorage, _name, None)):
        setattr(_RetryingStorage, _name, _retried(_name))


@functools.cache
def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on brainsearch's database (one per process); SQLite waits for locks like ours do.
    Optuna creates its tables on first use: under the schema lock, so workers starting together do not race."""
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    engine = make_engine(url)
    try:
        with schema_lock(engine):
            return _RetryingStorage(url, engine_kwargs=kwargs)
    finally:
        engine.dispose()
