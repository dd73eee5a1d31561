"""Corpora and batching: the built-in default corpus, text files, JSON lines, pre-tokenised arrays, and English prose
written from pydoc's topics (a second distribution that needs no download)."""

from brainsearch.data.batches import BatchSampler
from brainsearch.data.corpus import Corpus, load_corpus
from brainsearch.data.prose import write_prose_corpus

__all__ = ["BatchSampler", "Corpus", "load_corpus", "write_prose_corpus"]
