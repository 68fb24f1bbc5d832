"""docs/architecture.md matches the tree, and the import rules it states
hold: lower lines never import higher ones, models reach the ops only
through ``mmeffattn.ops``, only the ops' CPU modules import ``_ext``."""
import ast
import os
import os.path as osp
import re

from helpers import REPO

PACKAGE = osp.join(REPO, 'mmeffattn')
DOC = osp.join(REPO, 'docs', 'architecture.md')
LINES = {'version': 0, 'registry': 0, 'ops': 1, 'utils': 2, 'models': 3,
         'datasets': 3, 'engine': 4, 'analysis': 4, 'deployment': 4,
         'visualization': 4, 'converters': 4}


def _tree_block():
    text = open(DOC).read()
    return re.search(r'```\n(mmeffattn/.*?)```', text, re.S).group(1)


def _folders(root, skip=('__pycache__', )):
    found = set()
    for path, dirs, _ in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip]
        found.update(osp.relpath(osp.join(path, d), REPO) for d in dirs)
    return found


def _imports(path):
    """(module, line) of every mmeffattn import in ``path``, relative
    imports resolved."""
    parts = osp.relpath(path, REPO)[:-3].split(os.sep)
    if parts[-1] == '__init__':
        parts = parts[:-1] + ['__init__']
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:-node.level]
                module = '.'.join(base + ([node.module] if node.module
                                          else []))
            else:
                module = node.module or ''
            names = [module] + [f'{module}.{a.name}' for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.split('.')[0] == 'mmeffattn':
                yield name, node.lineno


def _package_files():
    for path, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != '__pycache__']
        for f in files:
            if f.endswith('.py'):
                yield osp.join(path, f)


def test_every_folder_is_drawn_and_every_drawn_folder_exists():
    block = _tree_block()
    drawn = set(re.findall(r'([A-Za-z_]+)/', block))
    real = {f for f in _folders(PACKAGE) | _folders(osp.join(REPO, 'tools'))}
    for folder in real:
        assert osp.basename(folder) in drawn, (
            f'{folder}/ is not in docs/architecture.md')
    configs = os.listdir(osp.join(REPO, 'configs'))
    names = {osp.basename(f) for f in real} | set(configs) | {
        'mmeffattn', 'tools', 'configs', 'tests'}
    assert drawn <= names, f'drawn but absent: {sorted(drawn - names)}'


def test_every_top_level_package_has_a_line():
    tops = {f[:-3] if f.endswith('.py') else f
            for f in os.listdir(PACKAGE)
            if f != '__init__.py' and f != '__pycache__'}
    assert tops == set(LINES), sorted(tops ^ set(LINES))


def test_lower_lines_never_import_higher_ones():
    wrong = []
    for path in _package_files():
        top = osp.relpath(path, PACKAGE).split(os.sep)[0].replace('.py', '')
        if top not in LINES:
            continue
        for name, line in _imports(path):
            target = name.split('.')[1] if '.' in name else None
            if target is None:  # `import mmeffattn` registers everything
                if top == 'ops':
                    wrong.append(f'{path}:{line} imports mmeffattn')
                continue
            if target in LINES and target != top and \
                    LINES[target] >= LINES[top]:
                wrong.append(f'{path}:{line} ({top}) imports {name}')
    assert not wrong, '\n'.join(wrong)


def test_models_use_the_public_ops_and_only_cpu_modules_use_ext():
    wrong = []
    for path in _package_files():
        rel = osp.relpath(path, PACKAGE)
        for name, line in _imports(path):
            if rel.startswith('models') and name.startswith('mmeffattn.ops.'):
                short = name[len('mmeffattn.ops.'):]
                if '.' in short or not short.isidentifier() or \
                        osp.isdir(osp.join(PACKAGE, 'ops', short)) or \
                        osp.isfile(osp.join(PACKAGE, 'ops', short + '.py')):
                    wrong.append(f'{rel}:{line} imports {name}')
            if '._ext' in name and not (
                    rel.startswith(osp.join('ops', '_ext'))
                    or rel.endswith('_cpu.py') or rel in (
                        osp.join('ops', '__init__.py'),
                        osp.join('ops', 'sasa', 'local_attention.py'),
                        osp.join('ops', 'sasa', 'attention_stem.py'))):
                wrong.append(f'{rel}:{line} imports {name}')
    assert not wrong, '\n'.join(wrong)


def test_tests_import_helpers_not_conftest_or_tools():
    wrong = []
    for path, dirs, files in os.walk(osp.join(REPO, 'tests')):
        dirs[:] = [d for d in dirs if d not in ('__pycache__', 'data')]
        for f in files:
            if not f.endswith('.py') or f == 'test_architecture.py':
                continue
            text = open(osp.join(path, f)).read()
            if re.search(r'^\s*from conftest import', text, re.M):
                wrong.append(f'{f} imports from conftest')
            if re.search(r"sys\.path\.insert\(.*tools", text):
                wrong.append(f'{f} puts tools/ on sys.path')
    assert not wrong, '\n'.join(wrong)
