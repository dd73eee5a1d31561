"""Reproducible performance comparisons; run each module directly (not part of the test suite)."""
