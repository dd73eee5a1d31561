"""SQL storage: typed table models, Alembic migrations, and a repository returning plain domain objects.

SQLite (a file under the data directory) is the embedded default; PostgreSQL serves several workers.
"""

from brainsearch.storage.domain import Candidate, MetricPoint, Page, Search, SeedRun, Trial
from brainsearch.storage.engine import make_engine, migrate, schema_lock, schema_revision
from brainsearch.storage.repository import TRIAL_SORT_KEYS, Repository

__all__ = [
    "TRIAL_SORT_KEYS",
    "Candidate",
    "MetricPoint",
    "Page",
    "Repository",
    "Search",
    "SeedRun",
    "Trial",
    "make_engine",
    "migrate",
    "schema_lock",
    "schema_revision",
]
