"""Build and load the one C++ extension that holds every CPU kernel.

The sources (``csrc/``: one file per kernel, bound together by
``csrc/pybind.cpp``) are compiled with torch's cpp_extension (ninja, the
system C++ compiler) where they run, with this CPU's SIMD flags, into torch's
extension cache (``TORCH_EXTENSIONS_DIR``). The cache folder is keyed by the
Python and torch versions and a hash of the sources, the flags and the torch
installation's path (the ninja file names its include and library folders),
and the sources are copied into it before the build: every checkout of the
same sources using one environment shares one build (a load takes
milliseconds), and changed sources or another environment build into a
folder of their own, never over another's.

A build prints one line before it starts (a minute or more on two cores) and
one while it waits for another process's build. If the build fails, the ops
fall back to their PyTorch paths with one warning. Builds are serialised by
an ``fcntl`` lock on the build folder, which the OS releases when its holder
dies; torch's own ``lock`` file is not, so holding our lock, a leftover one
is stale and is removed.
"""
import fcntl
import hashlib
import os
import os.path as osp
import shutil
import sys
import threading
import warnings

_LOCK = threading.Lock()
_EXT = None
_FAILED = False

CSRC = osp.join(osp.dirname(osp.abspath(__file__)), 'csrc')
SOURCES = ('pybind.cpp', 'local_attention_cpu.cpp', 'attention_stem_cpu.cpp',
           'sinkhorn_cpu.cpp', 'set_nystrom_cpu.cpp')
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


def _compile_flags():
    # -fopenmp: at::parallel_for is an OpenMP pragma in ATen's headers,
    # compiled into this module; without the flag it runs serially. The
    # module then links libgomp.so.1, which resolves to torch's already
    # loaded runtime (torch.set_num_threads).
    return ['-O3', '-ffast-math', '-fopenmp', '-Wno-psabi'] + _simd_flags()


def _source_files():
    """Every file of ``csrc/`` (sources and headers), sorted."""
    return sorted(f for f in os.listdir(CSRC) if f.endswith(('.cpp', '.h')))


def _torch_root() -> str:
    """The torch installation the module compiles and links against (its
    include and library paths go into torch's ninja file)."""
    import torch
    return osp.dirname(torch.__file__)


def build_hash() -> str:
    """12 hex digits of the SHA-256 of the sources, headers, flags and the
    torch installation: any of them changed builds into another folder."""
    digest = hashlib.sha256()
    for name in _source_files():
        digest.update(name.encode() + b'\0')
        with open(osp.join(CSRC, name), 'rb') as f:
            digest.update(f.read() + b'\0')
    digest.update(' '.join(_compile_flags()).encode() + b'\0')
    digest.update(_torch_root().encode())
    return digest.hexdigest()[:12]


def extension_name() -> str:
    """The module's name; it carries the SIMD flags, so a cache built for
    another CPU is never loaded here."""
    return 'mmeffattn_ext' + ''.join(
        f.replace('-m', '_') for f in _simd_flags())


def build_directory() -> str:
    """``$TORCH_EXTENSIONS_DIR`` (or torch's default root) / Python and torch
    versions / :func:`extension_name` _ :func:`build_hash`."""
    import torch
    from torch.utils.cpp_extension import get_default_build_root
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or get_default_build_root()
    abi = (f'py{sys.version_info[0]}{sys.version_info[1]}'
           f'_torch{torch.__version__}')
    return osp.join(root, abi, f'{extension_name()}_{build_hash()}')


def _say(message):
    print(f'mmeffattn: {message}', file=sys.stderr, flush=True)


def _copy_sources(directory):
    """The sources under ``directory/src`` (same paths for every checkout,
    so torch's ninja file, and with it the build, is shared)."""
    src_dir = osp.join(directory, 'src')
    os.makedirs(src_dir, exist_ok=True)
    for name in _source_files():
        target = osp.join(src_dir, name)
        if not osp.exists(target):
            shutil.copyfile(osp.join(CSRC, name), target + '.tmp')
            os.replace(target + '.tmp', target)
    return [osp.join(src_dir, name) for name in SOURCES]


def _load_under_build_lock():
    """torch's ``load`` into :func:`build_directory` while holding an
    ``fcntl`` lock there, after removing a stale torch ``lock`` file."""
    from torch.utils.cpp_extension import load
    directory = build_directory()
    os.makedirs(directory, exist_ok=True)
    with open(osp.join(directory, 'mmeffattn-build.flock'), 'w') as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f'waiting for another process building the CPU kernels in '
                 f'{directory}')
            fcntl.flock(fh, fcntl.LOCK_EX)
        stale = osp.join(directory, 'lock')
        if osp.exists(stale):
            os.remove(stale)
        built = osp.exists(osp.join(directory, f'{extension_name()}.so'))
        if not built:
            _say(f'building the CPU kernels into {directory} (once per '
                 'environment and source version; a minute or more)')
        return load(name=extension_name(), sources=_copy_sources(directory),
                    build_directory=directory,
                    extra_cflags=_compile_flags(),
                    extra_ldflags=['-fopenmp'], verbose=False)


def load_extension():
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
            _EXT = _load_under_build_lock()
        except Exception as exc:  # no compiler, no ninja, ...
            _FAILED = True
            warnings.warn('mmeffattn: could not build the CPU kernels '
                          f'({exc!r}); the ops use their PyTorch paths')
    return _EXT


def require_extension(op: str):
    """The compiled module; a RuntimeError naming ``op`` if it is missing."""
    ext = load_extension()
    if ext is None:
        raise RuntimeError(f'the CPU kernel of {op} could not be built here')
    return ext


def extension_available() -> bool:
    """Whether the kernels run here. Eager: builds or loads them. Under
    torch.compile: whether they have not failed (the custom ops load them
    when they first run, outside the trace)."""
    import torch
    if torch.compiler.is_compiling():
        return not _FAILED
    return load_extension() is not None


def eager_kernel_runs(tensor, dtypes) -> bool:
    """Whether an eager-only CPU kernel (an autograd function, not a custom
    op: compile and export trace the PyTorch path instead) runs on
    ``tensor``: on CPU, in one of ``dtypes``, outside tracing, built here."""
    import torch

    from ..export import is_exporting
    if (tensor.device.type != 'cpu' or tensor.dtype not in dtypes
            or torch.compiler.is_compiling() or is_exporting()):
        return False
    return load_extension() is not None
