#!/usr/bin/env bash
# Install brainsearch with its test tools into .venv, then run the linters, the type checker and the whole test
# suite (extra arguments go to pytest).
EXTRAS=dev source "$(dirname "$0")/_env.sh"
ruff check brainsearch service tests benchmarks
ruff format --check brainsearch service tests benchmarks
mypy brainsearch service
python -m pytest "$@"
