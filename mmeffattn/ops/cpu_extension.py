"""JIT build of the fused CPU kernel of :func:`local_attention2d`.

Compiled once per machine with torch's cpp_extension (ninja, the system C++
compiler) into torch's extension cache (``TORCH_EXTENSIONS_DIR``); later
imports load it in milliseconds. If the build fails, the op falls back to the
pure-PyTorch blocked-halo path with one warning.

Builds are serialised by an ``fcntl`` lock on the build directory, which the
OS releases when its holder dies. torch's own ``lock`` file is not: a build
killed half way (a timeout, a stopped session) leaves it behind and every
later ``load`` waits on it forever. Holding our lock, no live process is
building, so such a file is stale and is removed.
"""
import fcntl
import os
import os.path as osp
import shutil
import sys
import threading
import warnings

_LOCK = threading.Lock()
_EXT = None
_FAILED = False


AVX512 = ('avx512f', 'avx512vl', 'avx512dq', 'avx512bw')


def _simd_flags():
    """AVX2/FMA, and AVX-512 (16-lane kernels, simd_vec.h) when this CPU has
    them (the kernel is built where it runs)."""
    try:
        with open('/proc/cpuinfo') as f:
            cpu_flags = set(f.read().split())
    except OSError:
        return []
    if not {'avx2', 'fma'} <= cpu_flags:
        return []
    flags = ['-mavx2', '-mfma']
    if set(AVX512) <= cpu_flags:
        flags += [f'-m{name}' for name in AVX512]
    return flags


def extension_name() -> str:
    """The module's name; it carries the SIMD flags, so a cache built for
    another CPU is never loaded here."""
    return 'mmeffattn_local_attention_cpu' + ''.join(
        f.replace('-m', '_') for f in _simd_flags())


def build_directory() -> str:
    """Where the module is built: ``$TORCH_EXTENSIONS_DIR`` (or torch's
    default root) / python and torch versions / :func:`extension_name`."""
    import torch
    from torch.utils.cpp_extension import get_default_build_root
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or get_default_build_root()
    abi = (f'py{sys.version_info[0]}{sys.version_info[1]}'
           f'_torch{torch.__version__}')
    return osp.join(root, abi, extension_name())


def _load_under_build_lock(**kwargs):
    """torch's ``load`` into :func:`build_directory` while holding an
    ``fcntl`` lock there, after removing a stale torch ``lock`` file."""
    from torch.utils.cpp_extension import load
    directory = build_directory()
    os.makedirs(directory, exist_ok=True)
    with open(osp.join(directory, 'mmeffattn-build.flock'), 'w') as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        stale = osp.join(directory, 'lock')
        if osp.exists(stale):
            os.remove(stale)
        return load(name=extension_name(), build_directory=directory,
                    **kwargs)


def load_cpu_extension():
    """The compiled module, or None if it cannot be built here."""
    global _EXT, _FAILED
    if _EXT is not None or _FAILED:
        return _EXT
    if os.environ.get('MMEFFATTN_DISABLE_CPP') == '1':
        _FAILED = True
        return None
    with _LOCK:
        if _EXT is not None or _FAILED:
            return _EXT
        # ninja from the venv is found even when the venv is not activated
        bin_dir = osp.dirname(sys.executable)
        if shutil.which('ninja') is None and osp.isfile(
                osp.join(bin_dir, 'ninja')):
            os.environ['PATH'] = bin_dir + os.pathsep + os.environ.get(
                'PATH', '')
        try:
            src = [osp.join(osp.dirname(__file__), 'csrc', f)
                   for f in ('local_attention_cpu.cpp',
                             'attention_stem_cpu.cpp', 'sinkhorn_cpu.cpp',
                             'set_nystrom_cpu.cpp')]
            # -fopenmp: at::parallel_for is an OpenMP pragma in ATen's
            # headers, compiled into this module; without the flag it runs
            # serially. The module then links libgomp.so.1, which resolves
            # to torch's already loaded runtime (torch.set_num_threads).
            flags = ['-O3', '-ffast-math', '-fopenmp',
                     '-Wno-psabi'] + _simd_flags()
            _EXT = _load_under_build_lock(
                sources=src, extra_cflags=flags, extra_ldflags=['-fopenmp'],
                verbose=False)
        except Exception as exc:  # no compiler, no ninja, ...
            _FAILED = True
            warnings.warn('mmeffattn: could not build the CPU kernel of '
                          f'local_attention2d ({exc!r}); using the slower '
                          'blocked-halo path')
    return _EXT


def cpu_extension_available() -> bool:
    """Whether the kernel runs here. Eager: builds or loads it. Under
    torch.compile: whether it has not failed (the custom op loads it when it
    first runs, outside the trace)."""
    import torch
    if torch.compiler.is_compiling():
        return not _FAILED
    return load_cpu_extension() is not None


def eager_kernel_runs(tensor, dtypes) -> bool:
    """Whether an eager-only CPU kernel (an autograd function, not a custom
    op: compile and export trace the PyTorch path instead) runs on
    ``tensor``: on CPU, in one of ``dtypes``, outside tracing, built here."""
    import torch

    from .export import is_exporting
    if (tensor.device.type != 'cpu' or tensor.dtype not in dtypes
            or torch.compiler.is_compiling() or is_exporting()):
        return False
    return load_cpu_extension() is not None
