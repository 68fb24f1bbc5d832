"""The one C++ extension: its build folder is keyed by the sources, a
second checkout of the same sources loads the same build, and a killed
build's lock file is not waited on."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

import mmeffattn
from mmeffattn.ops._ext import extension_available

STALE_LOCK = """
import os, os.path as osp
from mmeffattn.ops._ext import build_directory, load_extension
lock = osp.join(build_directory(), 'lock')
os.makedirs(build_directory(), exist_ok=True)
open(lock, 'w').close()  # what a build killed half way leaves
assert load_extension() is not None
assert not osp.exists(lock)
print('loaded')
"""

LOAD = """
from mmeffattn.ops._ext import build_directory, load_extension
assert load_extension() is not None
print(build_directory())
"""


def _run(code, **env):
    return subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=600,
                          env=dict(os.environ, **env))


def test_stale_build_lock_is_removed_not_waited_on():
    """torch's FileBaton waits forever on a ``lock`` file left by a killed
    build; the loader removes it while it holds its own fcntl lock."""
    if not extension_available():
        pytest.skip('CPU extension not built')
    out = _run(STALE_LOCK)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == 'loaded'


def test_build_directory_names_python_torch_flags_and_build_hash():
    import torch

    from mmeffattn.ops._ext import build_directory, build_hash, extension_name
    path = build_directory()
    assert osp.basename(path) == f'{extension_name()}_{build_hash()}'
    assert f'torch{torch.__version__}' in path


def test_second_checkout_loads_the_same_build_without_rebuilding(tmp_path):
    """A copy of the package elsewhere (another checkout) with the same
    sources maps to the same folder and loads the built module: no build
    line, no compile."""
    if not extension_available():
        pytest.skip('CPU extension not built')
    from mmeffattn.ops._ext import build_directory
    copy = tmp_path / 'checkout'
    shutil.copytree(osp.dirname(mmeffattn.__file__), copy / 'mmeffattn',
                    ignore=shutil.ignore_patterns('__pycache__'))
    out = _run(LOAD, PYTHONPATH=str(copy))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == build_directory()
    assert 'building the CPU kernels' not in out.stderr


def test_changed_sources_build_into_a_folder_of_their_own(tmp_path,
                                                          monkeypatch):
    """The hash follows the sources' content, not their path."""
    from mmeffattn.ops._ext import build
    original = build.build_hash()
    csrc = tmp_path / 'csrc'
    shutil.copytree(build.CSRC, csrc)
    monkeypatch.setattr(build, 'CSRC', str(csrc))
    assert build.build_hash() == original
    with open(csrc / 'pybind.cpp', 'a') as f:
        f.write('\n// a change\n')
    assert build.build_hash() != original


def test_another_torch_installation_builds_into_its_own_folder(monkeypatch):
    """Two environments (e.g. each checkout's own .venv) write different
    include paths into torch's ninja file: sharing a folder would make each
    rebuild the other's module on every load."""
    from mmeffattn.ops._ext import build
    original = build.build_hash()
    monkeypatch.setattr(build, '_torch_root',
                        lambda: '/elsewhere/.venv/lib/torch')
    assert build.build_hash() != original
