"""Process-wide settings, read once from ``BRAINSEARCH_*`` environment variables (pydantic-settings).

Only the entry points read them (the CLI, the service, the queue worker) and pass what the library needs (the data
directory, the space ceiling) as arguments. Command-line flags override these; tests override them by clearing the
:func:`get_settings` cache.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_MAX_SPACE_PARAMS", "Settings", "get_settings"]

# The defaults the library falls back to when a caller passes nothing; only the entry points (the CLI, the service,
# the queue worker) read the environment, through :func:`get_settings`, and pass what they read down.
DEFAULT_DATA_DIR = Path.home() / ".brainsearch"
DEFAULT_MAX_SPACE_PARAMS = 2e12


class Settings(BaseSettings):
    """Configuration of a brainsearch process."""

    model_config = SettingsConfigDict(env_prefix="BRAINSEARCH_", extra="ignore")

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Holds the SQLite database, corpus caches and exports.",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in the data directory."
    )
    api_token: str | None = Field(default=None, description="Bearer token required on write endpoints.")
    api_read_auth: bool = Field(default=False, description="Require the token on read endpoints too.")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "::1"],
        description="Host headers the API answers (serve adds the address it binds); '*' for any.",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body the API accepts.")
    executor: str = Field(default="local", description="Trial executor: local or ray.")
    ray_address: str | None = Field(default=None, description="Address of a running Ray cluster.")
    max_space_params: float = Field(
        default=DEFAULT_MAX_SPACE_PARAMS,
        gt=0,
        description="Hard ceiling on the total parameters of a space's largest architecture; larger spaces are "
        "rejected at load time.",
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the embedded SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'brainsearch.db'}"


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()
