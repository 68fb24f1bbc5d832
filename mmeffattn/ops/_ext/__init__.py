"""The C++ extension of the CPU kernels: its build, load and availability.

Only the ops' backend modules import this package; models and tools use the
public functions of :mod:`mmeffattn.ops`.
"""
from .build import (build_directory, build_hash, eager_kernel_runs,
                    extension_available, extension_name, load_extension,
                    require_extension)

__all__ = ['build_directory', 'build_hash', 'eager_kernel_runs',
           'extension_available', 'extension_name', 'load_extension',
           'require_extension']
