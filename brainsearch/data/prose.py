"""A second corpus that needs no download: English prose, for moving a model trained on the built-in corpus (the
standard library's source, mostly code) on to a different distribution, as Lifelong-MoE expansion
(:func:`brainsearch.train.lifelong.expand`) and its tests do.

The text is the documentation topics ``pydoc`` shows (``pydoc_data.topics``, part of every CPython install), written
to a file so that it goes through :func:`~brainsearch.data.load_corpus` like any text corpus, tokenised and cached.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_prose_corpus"]


def write_prose_corpus(folder: Path) -> Path:
    """Write English prose to ``folder/python-docs-topics.txt`` and return the path: the documentation topics that
    ``pydoc`` shows, one after another, in the order of their names.

    The file is rewritten only when its text changes, so a corpus cache of it stays valid.
    """
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name].strip() for name in sorted(topics)) + "\n"
    path = folder / "python-docs-topics.txt"
    folder.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path
