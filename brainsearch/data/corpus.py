"""Corpora: the built-in default, text files, JSON lines and pre-tokenised arrays, cached once as token arrays.

The built-in corpus needs no download on any machine: it is the Python standard library's own source (code,
docstrings and ``pydoc_data``'s documentation text) of the running interpreter, read in a fixed order. Text is
tokenised byte-level when ``vocab_size == 256`` (losses convert exactly to bits per byte) and with a BPE trained
locally on the corpus otherwise. Validation is the last ``val_fraction`` of the token stream; files are ordered by a
hash of their relative path, so both splits mix modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainsearch.data.tokenizer import BPETokenizer, ByteTokenizer, Tokenizer, train_bpe
from brainsearch.errors import DataError, Problem
from brainsearch.settings import DEFAULT_DATA_DIR

__all__ = ["Corpus", "load_corpus"]

TEXT_SUFFIXES = frozenset({".txt", ".md", ".rst", ".py", ".text"})
_SKIP_PARTS = frozenset({"site-packages", "test", "tests", "idle_test", "__pycache__"})
CACHE_VERSION = 1


@dataclass(frozen=True)
class Corpus:
    """Token ids split into train and validation; ``bytes_per_token`` converts nats/token to bits/byte."""

    name: str
    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    bytes_per_token: float | None
    digest: str

    _entropy: list[float] = field(default_factory=list, init=False, repr=False, compare=False)

    def unigram_entropy(self) -> float:
        """Entropy (nats per token) of the training tokens' unigram distribution: the loss of the best model that
        ignores context. A model that learns anything from context falls below it. Computed once per corpus (every
        trial of a search reports it)."""
        if not self._entropy:
            counts = np.bincount(np.asarray(self.train), minlength=self.vocab_size).astype(np.float64)
            p = counts[counts > 0] / counts.sum()
            self._entropy.append(float(-(p * np.log(p)).sum()))
        return self._entropy[0]


def _fail(message: str, source: str = "data") -> DataError:
    return DataError([Problem("data", message, source)])


def _stdlib_files() -> list[tuple[str, Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [
        (str(p.relative_to(root)), p) for p in root.rglob("*.py") if not (_SKIP_PARTS & set(p.relative_to(root).parts))
    ]
    return sorted(files, key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())


def _text_files(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    files = [(str(p.relative_to(path)), p) for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES]
    return sorted(files, key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())


def _read_texts(files: list[tuple[str, Path]], source: str) -> Iterator[str]:
    for rel, file in files:
        try:
            yield file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(f"{rel}: not UTF-8 text (byte {exc.start})", source) from None
        except OSError as exc:
            raise _fail(f"{rel}: cannot read: {exc.strerror or exc}", source) from None


def _jsonl_texts(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(f"line {n}: not valid JSON: {exc.msg}", str(path)) from None
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                raise _fail(f"line {n}: expected an object with a string field 'text'", str(path))
            yield doc["text"]


def _fingerprint(files: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for rel, file in files:
        st = file.stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _tokenize(texts: list[str], vocab_size: int, cache: Path, key: str, source: str) -> tuple[np.ndarray, float]:
    tokenizer: Tokenizer
    if vocab_size == 256:
        tokenizer = ByteTokenizer()
    elif vocab_size < 256:
        raise _fail(f"text needs vocab_size >= 256 (byte-level), got {vocab_size}", source)
    else:
        bpe_path = cache / f"{key}.bpe.json"
        tokenizer = BPETokenizer(bpe_path) if bpe_path.exists() else train_bpe(texts, vocab_size, bpe_path)
    ids = np.concatenate([tokenizer.encode(t) for t in texts]) if texts else np.zeros(0, dtype=np.uint16)
    num_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return ids.astype(np.uint16 if vocab_size <= 65536 else np.uint32), num_bytes / max(1, len(ids))


def _array(path: Path, vocab_size: int) -> np.ndarray:
    source = str(path)
    if path.suffix == ".npy":
        try:
            arr: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise _fail(f"not a readable .npy array: {exc}", source) from None
    else:
        if path.is_dir():
            raise _fail("is a directory, not a token file", source)
        size = path.stat().st_size
        if size % 2:
            raise _fail("a .bin token file holds uint16 values: its size must be even", source)
        if size == 0:
            return np.zeros(0, dtype=np.uint16)  # reported as an empty corpus
        try:
            arr = np.memmap(path, dtype=np.uint16, mode="r")
        except (ValueError, OSError) as exc:
            raise _fail(f"cannot map the token file: {exc}", source) from None
    if arr.dtype not in (np.uint16, np.uint32) or arr.ndim != 1:
        raise _fail(f"expected a 1-D uint16 or uint32 token array, got {arr.ndim}-D {arr.dtype}", source)
    if arr.size and int(arr.max()) >= vocab_size:
        raise _fail(f"token id {int(arr.max())} is outside the vocabulary of {vocab_size}", source)
    return arr


def load_corpus(
    source: str = "default", vocab_size: int = 256, data_dir: Path | None = None, val_fraction: float = 0.05
) -> Corpus:
    """Load ``source`` (``"default"``, a text file or folder, ``.jsonl``, ``.npy`` / ``.bin`` token array), cached
    under ``data_dir/corpora`` (default: ``~/.brainsearch``; the entry points pass ``BRAINSEARCH_DATA_DIR``); raises
    :class:`~brainsearch.errors.DataError` naming what is wrong."""
    cache = (data_dir or DEFAULT_DATA_DIR) / "corpora"
    bytes_per_token: float | None
    if source == "default":
        files = _stdlib_files()
        name = f"python{sys.version_info.major}.{sys.version_info.minor}-stdlib"
        key = f"{name}-{_fingerprint(files)}-v{vocab_size}-c{CACHE_VERSION}"
        tokens, bytes_per_token = _cached_text(cache, key, lambda: list(_read_texts(files, source)), vocab_size, source)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise _fail("no such file or directory (give a path, or 'default' for the built-in corpus)", source)
        name = path.name
        if path.suffix in (".npy", ".bin"):
            tokens, bytes_per_token = _array(path, vocab_size), None
            key = f"{name}-array"
        else:
            files = [(path.name, path)] if path.is_file() else _text_files(path)
            if not files:
                raise _fail(f"no text files ({', '.join(sorted(TEXT_SUFFIXES))}) in this folder", source)
            key = f"{name}-{_fingerprint(files)}-v{vocab_size}-c{CACHE_VERSION}"

            def texts() -> list[str]:
                if path.suffix == ".jsonl":
                    return list(_jsonl_texts(path))
                return list(_read_texts(files, source))

            tokens, bytes_per_token = _cached_text(cache, key, texts, vocab_size, source)
    if tokens.size == 0:
        raise _fail("the corpus is empty", source)
    num_val = max(1, int(tokens.size * val_fraction))
    return Corpus(
        name,
        tokens[:-num_val],
        tokens[-num_val:],
        vocab_size,
        bytes_per_token,
        hashlib.sha256(key.encode()).hexdigest()[:16],
    )


def _cached_text(
    cache: Path, key: str, texts: Callable[[], list[str]], vocab_size: int, source: str
) -> tuple[np.ndarray, float]:
    npy, meta = cache / f"{key}.npy", cache / f"{key}.json"
    if npy.exists() and meta.exists():
        cached: np.ndarray = np.load(npy, mmap_mode="r")
        return cached, float(json.loads(meta.read_text())["bytes_per_token"])
    tokens, bytes_per_token = _tokenize(texts(), vocab_size, cache, key, source)
    cache.mkdir(parents=True, exist_ok=True)
    # Write then rename, metadata last: a concurrent reader sees a whole cache or none.
    tag = f"{os.getpid()}.{threading.get_ident()}"
    tmp, tmp_meta = cache / f"{key}.{tag}.tmp.npy", cache / f"{key}.{tag}.tmp.json"
    np.save(tmp, tokens)
    tmp.replace(npy)
    tmp_meta.write_text(json.dumps({"bytes_per_token": bytes_per_token, "tokens": int(tokens.size)}))
    tmp_meta.replace(meta)
    return tokens, bytes_per_token
