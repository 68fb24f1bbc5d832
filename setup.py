from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open('mmeffattn/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(path):
    with open(path) as f:
        return [line.strip() for line in f
                if line.strip() and not line.startswith('#')]


setup(
    name='mmeffattn',
    version=read_version(),
    description='Efficient attention (SASA, SeTformer) for OpenMMLab 2.x',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,
    # the CPU kernels are JIT-built from their sources where they run
    package_data={'mmeffattn.ops._ext': ['csrc/*.cpp', 'csrc/*.h']},
    python_requires='>=3.9',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'toolboxes': read_requirements('requirements/toolboxes.txt'),
        'tests': read_requirements('requirements/tests.txt'),
    },
    zip_safe=False,
)
