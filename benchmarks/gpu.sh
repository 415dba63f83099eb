#!/usr/bin/env bash
# The GPU check of issue 16 in one command (see benchmarks/gpu.py for the parts and outputs):
#   benchmarks/gpu.sh OUT_DIR            # one CUDA GPU: at most 8 minutes, every figure
#   benchmarks/gpu.sh OUT_DIR --smoke    # any machine: tiny shapes, proves the pipeline
# Uses the repository's .venv when there is one, else python3 from PATH.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then py="$root/.venv/bin/python"; else py=python3; fi
fi
exec "$py" "$root/benchmarks/gpu.py" "$@"
