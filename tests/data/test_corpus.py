"""Corpora: the built-in default, user text / JSON lines / token arrays, BPE, and clear errors for bad data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from brainsearch.data import BatchSampler, load_corpus
from brainsearch.errors import DataError

TEXT = "The quick brown fox jumps over the lazy dog. " * 400


def test_default_corpus_is_real_text_and_cached(tmp_path: Path) -> None:
    corpus = load_corpus("default", 256, tmp_path)
    assert corpus.name.startswith("python3.") and corpus.train.size > 1_000_000 and corpus.val.size > 50_000
    sample = bytes(np.asarray(corpus.train[:200_000], dtype=np.uint8)).decode("utf-8", errors="replace")
    assert "def " in sample and "return" in sample and "import" in sample
    assert corpus.bytes_per_token == 1.0
    assert 2.0 < corpus.unigram_entropy() < 4.5  # English + code bytes, in nats
    cached = list((tmp_path / "corpora").glob("*.npy"))
    assert len(cached) == 1
    again = load_corpus("default", 256, tmp_path)
    assert again.digest == corpus.digest and np.array_equal(again.val, corpus.val)


def test_text_file_folder_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(TEXT)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "x.md").write_text(TEXT)
    (folder / "y.rst").write_text(TEXT.upper())
    (folder / "skip.bin").write_bytes(b"\x00\x01")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": TEXT[i : i + 500]}) for i in range(0, len(TEXT), 500)))
    cache = tmp_path / "cache"
    one, many, lines = (load_corpus(str(p), 256, cache) for p in (tmp_path / "a.txt", folder, jsonl))
    assert one.train.size + one.val.size == len(TEXT)
    assert many.train.size + many.val.size == 2 * len(TEXT)
    assert lines.train.size + lines.val.size == len(TEXT)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32])
def test_pretokenised_npy_is_memory_mapped(tmp_path: Path, dtype: type) -> None:
    path = tmp_path / "tokens.npy"
    np.save(path, (np.arange(10_000) % 1000).astype(dtype))
    corpus = load_corpus(str(path), 1000, tmp_path)
    assert isinstance(corpus.train, np.memmap) or isinstance(corpus.train.base, np.memmap)
    assert corpus.train.dtype == dtype and corpus.train.size + corpus.val.size == 10_000
    assert corpus.bytes_per_token is None


def test_pretokenised_bin(tmp_path: Path) -> None:
    path = tmp_path / "tokens.bin"
    (np.arange(4000) % 300).astype(np.uint16).tofile(path)
    assert load_corpus(str(path), 300, tmp_path).train.max() == 299


def test_bpe_trained_locally_when_vocab_asks(tmp_path: Path) -> None:
    text = TEXT + "Pack my box with five dozen liquor jugs. " * 300
    (tmp_path / "t.txt").write_text(text)
    corpus = load_corpus(str(tmp_path / "t.txt"), 300, tmp_path / "cache")
    total = corpus.train.size + corpus.val.size
    assert int(corpus.train.max()) < 300
    assert total < len(text) / 2  # merges make tokens longer than bytes
    assert corpus.bytes_per_token is not None and corpus.bytes_per_token > 2
    assert list((tmp_path / "cache" / "corpora").glob("*.bpe.json"))


def _write(path: Path, data: str | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def _npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("make", "vocab", "message"),
    [
        (lambda p: p / "missing.txt", 256, "no such file or directory"),
        (lambda p: _folder(p / "empty"), 256, "no text files"),
        (lambda p: _write(p / "e.txt", ""), 256, "the corpus is empty"),
        (lambda p: _write(p / "b.txt", b"\xff\xfe\xfa"), 256, "not UTF-8 text"),
        (
            lambda p: _write(p / "j.jsonl", '{"text": "ok"}\n{"txt": 1}\n'),
            256,
            "line 2: expected an object with a string field 'text'",
        ),
        (lambda p: _write(p / "j2.jsonl", "{oops\n"), 256, "line 1: not valid JSON"),
        (
            lambda p: _npy(p / "f.npy", np.zeros(10, np.float32)),
            256,
            "expected a 1-D uint16 or uint32 token array, got 1-D float32",
        ),
        (
            lambda p: _npy(p / "big.npy", np.full(10, 999, np.uint16)),
            256,
            "token id 999 is outside the vocabulary of 256",
        ),
        (lambda p: _write(p / "odd.bin", b"\x00\x01\x02"), 256, "size must be even"),
        (lambda p: _write(p / "s.txt", "abc"), 100, "text needs vocab_size >= 256"),
    ],
)
def test_bad_data_is_a_clear_error(tmp_path: Path, make, vocab: int, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        load_corpus(str(path), vocab, tmp_path / "cache")
    text = str(info.value)
    assert message in text and text.startswith(str(path)), text


def test_too_short_for_one_batch() -> None:
    with pytest.raises(DataError, match="the train split has 10 tokens, fewer than one sequence of seq_len"):
        BatchSampler(np.arange(10, dtype=np.uint16), 4, 64, seed=0)


def test_batches_are_reproducible_and_shifted() -> None:
    tokens = np.arange(5000, dtype=np.uint16)
    a, b = BatchSampler(tokens, 4, 16, seed=3), BatchSampler(tokens, 4, 16, seed=3)
    for _ in range(3):
        (xa, ya), (xb, yb) = a.next(), b.next()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(ya[:, :-1], xa[:, 1:]) and xa.shape == (4, 16)
    assert not torch.equal(BatchSampler(tokens, 4, 16, seed=4).next()[0], BatchSampler(tokens, 4, 16, seed=3).next()[0])


def test_empty_bin_file_is_an_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(DataError, match="the corpus is empty"):
        load_corpus(str(tmp_path / "empty.bin"), 256, tmp_path)
