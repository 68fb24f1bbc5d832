# Sourced by the launchers: picks the Python that has the project's stack.
#   $PYTHON if set; else the project's .venv/bin/python if it exists; else python.
# Fails with one message when that Python cannot import torch and mmengine.
_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$_REPO/.venv/bin/python" ]; then
    PYTHON="$_REPO/.venv/bin/python"
  else
    PYTHON=python
  fi
fi
if ! "$PYTHON" -c 'import torch, mmengine' >/dev/null 2>&1; then
  echo "error: '$PYTHON' cannot import torch and mmengine. Run 'make env' in" \
       "$_REPO, then 'source $_REPO/.venv/bin/activate' (or set PYTHON=/path/to/python)." >&2
  exit 1
fi
export PYTHONPATH="$_REPO${PYTHONPATH:+:$PYTHONPATH}"
