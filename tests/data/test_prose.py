"""The prose corpus written from pydoc's documentation topics: English, large enough, and stable on disk."""

from __future__ import annotations

from pathlib import Path

from brainsearch.data import write_prose_corpus


def test_write_prose_corpus_is_stable_english_text(tmp_path: Path) -> None:
    path = write_prose_corpus(tmp_path)
    mtime = path.stat().st_mtime_ns
    assert write_prose_corpus(tmp_path) == path and path.stat().st_mtime_ns == mtime  # a corpus cache stays valid
    text = path.read_text(encoding="utf-8")
    assert len(text) > 100_000
    words = text.split()
    assert sum(w in ("the", "is", "of", "a", "to") for w in words) / len(words) > 0.08  # English, not code
