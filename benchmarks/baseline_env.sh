#!/usr/bin/env bash
# A private venv with lmech as it was at an earlier commit, to time the current code side by
# side with it (benchmarks only). usage: bash benchmarks/baseline_env.sh COMMIT VENV_DIR
set -euo pipefail
commit=${1:?usage: baseline_env.sh COMMIT VENV_DIR}
venv=${2:?usage: baseline_env.sh COMMIT VENV_DIR}
src=$(mktemp -d)
git -C "$(dirname "$0")/.." archive "$commit" | tar -x -C "$src"
python3 -m venv "$venv"
"$venv/bin/pip" install -q "$src"
rm -rf "$src"
"$venv/bin/python" -c "import lmech.solvers; print('lmech at $commit installed in $venv')"
