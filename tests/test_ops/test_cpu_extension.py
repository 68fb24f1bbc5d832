import subprocess
import sys

import pytest

from mmeffattn.ops.cpu_extension import cpu_extension_available

STALE_LOCK = """
import os, os.path as osp
from mmeffattn.ops.cpu_extension import build_directory, load_cpu_extension
lock = osp.join(build_directory(), 'lock')
os.makedirs(build_directory(), exist_ok=True)
open(lock, 'w').close()  # what a build killed half way leaves
assert load_cpu_extension() is not None
assert not osp.exists(lock)
print('loaded')
"""


def test_stale_build_lock_is_removed_not_waited_on():
    """torch's FileBaton waits forever on a ``lock`` file left by a killed
    build; the loader removes it while it holds its own fcntl lock."""
    if not cpu_extension_available():
        pytest.skip('CPU extension not built')
    out = subprocess.run([sys.executable, '-c', STALE_LOCK],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == 'loaded'


def test_build_directory_names_python_torch_and_flags():
    import torch

    from mmeffattn.ops.cpu_extension import build_directory, extension_name
    path = build_directory()
    assert path.endswith(extension_name())
    assert f'torch{torch.__version__}' in path
