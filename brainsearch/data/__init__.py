"""Corpora and batching: the built-in default corpus, text files, JSON lines, pre-tokenised arrays."""

from brainsearch.data.batches import BatchSampler
from brainsearch.data.corpus import Corpus, load_corpus

__all__ = ["BatchSampler", "Corpus", "load_corpus"]
