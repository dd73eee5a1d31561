#!/usr/bin/env bash
# Install brainsearch with its test tools into .venv, then run the linters, the type checker and the tests.
#
#   bash scripts/test.sh            # everything (what .ci/run runs): two pytest workers, then the serial tests
#   bash scripts/test.sh --fast     # the tier for every change: no test marked slow (under 3 minutes)
#   bash scripts/test.sh --coverage # everything, with line and branch coverage of brainsearch/ and service/
#
# Other arguments go to pytest (a path, -k EXPR, -x, ...). Tests run on $BRAINSEARCH_TEST_WORKERS xdist workers
# (default 2); the 30 slowest are listed at the end of each run.
EXTRAS=dev source "$(dirname "$0")/_env.sh"
fast=0
coverage=0
args=()
for arg in "$@"; do
  case "$arg" in
    --fast) fast=1 ;;
    --coverage) coverage=1 ;;
    *) args+=("$arg") ;;
  esac
done
ruff check brainsearch service tests benchmarks
ruff format --check brainsearch service tests benchmarks
mypy brainsearch service

workers=("-n" "${BRAINSEARCH_TEST_WORKERS:-2}" "--dist" "loadgroup")
cov_first=()
cov_last=()
if [ "$coverage" = 1 ]; then
  cov_first=("--cov" "--cov-report=")
  cov_last=("--cov" "--cov-append" "--cov-report=term" "--cov-report=json:coverage.json")
fi
if [ "$fast" = 1 ]; then
  python -m pytest "${workers[@]}" -m "not slow and not serial" --durations=30 "${cov_last[@]}" "${args[@]}"
  exit
fi
python -m pytest "${workers[@]}" -m "not serial" --durations=30 "${cov_first[@]}" "${args[@]}"
# The serial tests alone (none among the arguments' selection: pytest's exit status 5, not a failure).
status=0
python -m pytest -m serial --durations=30 "${cov_last[@]}" "${args[@]}" || status=$?
if [ "$status" != 0 ] && [ "$status" != 5 ]; then
  exit "$status"
fi
