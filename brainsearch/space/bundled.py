"""The spaces shipped in ``search_spaces/``: found in a source checkout and in an installed wheel alike."""

from __future__ import annotations

from pathlib import Path

__all__ = ["bundled_space_names", "bundled_spaces_dir", "resolve_space_path"]

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def bundled_spaces_dir() -> Path:
    """``brainsearch/search_spaces`` inside a wheel (copied there at build time), else the checkout's folder."""
    for candidate in (_PACKAGE_DIR / "search_spaces", _PACKAGE_DIR.parent / "search_spaces"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the bundled search_spaces folder is missing from this installation")


def bundled_space_names() -> list[str]:
    """Names of the bundled spaces (file stems), sorted."""
    return sorted(p.stem for p in bundled_spaces_dir().glob("*.yaml"))


def resolve_space_path(path: str | Path) -> Path:
    """``path`` itself when it exists; a bundled space when ``path`` is a bare name like ``tiny``."""
    given = Path(path)
    if given.exists() or given.suffix or len(given.parts) != 1:
        return given
    bundled = bundled_spaces_dir() / f"{given}.yaml"
    return bundled if bundled.exists() else given
