#!/usr/bin/env bash
# One idempotent install of the pinned OpenMMLab stack + mmeffattn into ./.venv.
# Fresh machine: 20-40 min (torch download, mmcv build from source). Everything present: seconds.
#   PYTHON=python3.11  VENV=.venv  bash scripts/setup_env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
STAMP="$VENV/.mmeffattn-env-ok"
C="-c requirements/constraints.txt"

if [ -f "$STAMP" ] && cmp -s "$STAMP" <(cat requirements/*.txt setup.py) \
   && "$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmeffattn" 2>/dev/null; then
  echo "[setup] environment up to date ($VENV)"; exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
$PIP install -q --upgrade pip wheel "setuptools>=77,<81" ninja psutil
echo "[setup] torch (index build) + torchvision"
$PIP install -q $C torch torchvision
echo "[setup] mmengine"
$PIP install -q $C mmengine
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  # mmcv 2.1.0 has no wheels for this torch: build it with its C++ ops. CUDA ops when a GPU
  # and nvcc exist (FORCE_CUDA=1), else CPU ops. pip's wheel cache makes a rebuild take seconds.
  if command -v nvcc >/dev/null && "$VENV/bin/python" -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
    export FORCE_CUDA=1
  fi
  echo "[setup] mmcv 2.1.0 from source with ops (FORCE_CUDA=${FORCE_CUDA:-0}); 10-25 min on 2 cores the first time"
  MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} $PIP install $C --no-build-isolation mmcv==2.1.0
fi
echo "[setup] toolboxes"
$PIP install -q $C -r requirements/toolboxes.txt -r requirements/tests.txt \
  -r requirements/optional.txt -r requirements/lint.txt
echo "[setup] mmeffattn (editable)"
$PIP install -q $C --no-build-isolation --no-deps -e .
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg, mmpretrain, mmeffattn, torch; print('[setup] ok: torch', torch.__version__, 'mmcv', mmcv.__version__)"
# the CPU kernels: built once per source version (1-7 min on 2 cores), here, not inside a test
echo "[setup] mmeffattn CPU kernels"
"$VENV/bin/python" -c "import sys; from mmeffattn.ops._ext import load_extension as load; sys.exit(load() is None)" \
  || echo "[setup] warning: the CPU kernels did not build; the PyTorch paths run instead"
cat requirements/*.txt setup.py > "$STAMP"
