"""The model index, the metafiles and docs/model_zoo.md agree with the
configs: every entry's config exists, its parameter count is the built
model's, and the model-zoo page lists it with that count."""
import glob
import os.path as osp
import re

import pytest
import torch
import yaml
from helpers import REPO
from mmengine.config import Config

METAFILES = sorted(glob.glob(osp.join(REPO, 'configs', '*', 'metafile.yml')))


def _entries():
    for path in METAFILES:
        with open(path) as f:
            for model in yaml.safe_load(f)['Models']:
                yield model


ENTRIES = list(_entries())


def test_model_index_imports_every_metafile():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        imported = set(yaml.safe_load(f)['Import'])
    assert imported == {osp.relpath(p, REPO) for p in METAFILES}


@pytest.mark.parametrize('model', ENTRIES, ids=lambda m: m['Name'])
def test_metafile_entry_matches_its_config(model):
    import mmeffattn  # noqa: F401
    from mmeffattn.utils.launch import build_config_model
    config = osp.join(REPO, model['Config'])
    assert osp.isfile(config), f'{model["Name"]}: {config} does not exist'
    assert model['Name'] == osp.splitext(osp.basename(config))[0]
    cfg = Config.fromfile(config)
    cfg.model.pop('init_cfg', None)
    if 'backbone' in cfg.model:
        cfg.model.backbone.pop('init_cfg', None)
    try:  # no memory, no init cost
        with torch.device('meta'):
            net = build_config_model(cfg)
    except NotImplementedError:  # a module computes a buffer in __init__
        net = build_config_model(cfg)
    params = sum(p.numel() for p in net.parameters())
    assert model['Metadata']['Parameters'] == params, (
        f'{model["Name"]}: metafile says {model["Metadata"]["Parameters"]} '
        f'parameters, the config builds {params}; run '
        'tools/misc/update_metafiles.py')


def test_model_zoo_page_lists_every_entry_with_its_size():
    page = open(osp.join(REPO, 'docs', 'model_zoo.md')).read()
    for model in ENTRIES:
        rows = [line for line in page.splitlines()
                if line.startswith('|') and f'{model["Name"]}' in line]
        assert rows, f'docs/model_zoo.md does not list {model["Name"]}'
        millions = f'{model["Metadata"]["Parameters"] / 1e6:.2f}'
        gmacs = f'{model["Metadata"]["FLOPs"] / 1e9:.2f}'
        assert re.search(rf'\b{re.escape(millions)}\b', rows[0]), (
            f'{model["Name"]}: docs/model_zoo.md should give {millions} M '
            'parameters')
        assert re.search(rf'\b{re.escape(gmacs)}\b', rows[0]), (
            f'{model["Name"]}: docs/model_zoo.md should give {gmacs} G MACs')


def test_model_zoo_page_is_generated_from_the_metafiles():
    import subprocess
    import sys
    subprocess.run([sys.executable, osp.join(REPO, 'tools', 'misc',
                                             'update_model_zoo.py'),
                    '--check'], check=True)
