# Sourced by the set-up scripts: a virtual environment in .venv with brainsearch installed (editable) from this
# checkout. constraints.txt pins every package, torch to the CPU build 2.13.0, so nothing pulls a CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
export PATH="$ROOT/.venv/bin:$PATH"
TARGET="."
[ -n "${EXTRAS:-}" ] && TARGET=".[${EXTRAS}]"
python -m pip install -q --disable-pip-version-check -c constraints.txt -e "$TARGET"
