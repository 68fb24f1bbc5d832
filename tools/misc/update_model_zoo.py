"""Write docs/model_zoo.md from configs/*/metafile.yml.

Params and MACs come from the metafiles (``tools/misc/update_metafiles.py``
writes them from ``get_flops.py``); the papers' numbers and where they are
stated are in ``PAPER`` below; our demo results are in configs/demo/README.md.

  python tools/misc/update_model_zoo.py [--check]
"""
import argparse
import glob
import os.path as osp
import re
import sys

import yaml

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..')

# config name -> (the paper's metric, its source). Nothing here is ours.
PAPER = {
    'sasa-r26-convstem_32xb128-130e_in1k': ('75.8 top-1',
                                            'SASA paper, Table 1'),
    'sasa-r38-convstem_32xb128-130e_in1k': ('77.1 top-1',
                                            'SASA paper, Table 1'),
    'sasa-r50-convstem_32xb128-130e_in1k': ('77.4 top-1',
                                            'SASA paper, Table 1'),
    'sasa-r26_32xb128-130e_in1k': ('74.8 top-1', 'SASA paper, Table 1'),
    'sasa-r38_32xb128-130e_in1k': ('76.9 top-1', 'SASA paper, Table 1'),
    'sasa-r50_32xb128-130e_in1k': ('77.6 top-1', 'SASA paper, Table 1'),
    'retinanet_sasa-r50_sasa-fpn_8xb8-150e_coco': ('36.6 mAP',
                                                   'SASA paper, Table 2'),
    'retinanet_sasa-r50_fpn_1x_coco': (
        '36.2 mAP (conv FPN and heads)', 'SASA paper, Table 2'),
    'setformer-s_8xb128_in1k': ('84.7 top-1', 'SeTformer abstract'),
    'setformer-b_8xb128_in1k': ('86.2 top-1', 'SeTformer abstract'),
    'tome-r13_vit-base-p16_in1k-off-the-shelf': (
        '82.60 top-1 (AugReg ViT-B/16, 84.57 without ToMe)',
        'ToMe paper'),
    'tome-r13_deit-small_4xb256_in1k': ('79.36 top-1 (79.8 without ToMe)',
                                        'ToMe paper'),
    'sparseformer-t_8xb128_in1k': ('81.0 top-1', 'SparseFormer paper'),
    'sparseformer-s_8xb128_in1k': ('82.0 top-1', 'SparseFormer paper'),
    'sparseformer-b_8xb128_in1k': ('82.6 top-1', 'SparseFormer paper'),
    'rtdetr_r18vd_8xb2-72e_coco': ('46.5 AP', 'RT-DETR paper, COCO val'),
    'rtdetr_r50vd_8xb2-72e_coco': ('53.1 AP', 'RT-DETR paper, COCO val'),
    'rtdetr_r101vd_8xb2-72e_coco': ('54.3 AP', 'RT-DETR paper, COCO val'),
}

TASKS = (('Image classification (ImageNet-1k)', ('ImageNet-1k', )),
         ('Object detection and instance segmentation (COCO)', ('COCO', )),
         ('Semantic segmentation (ADE20K)', ('ADE20K', )))

HEADER = """# Model zoo

Every shipped full-size config, by task. **Params** and **MACs** are ours,
counted by `python tools/analysis_tools/get_flops.py CONFIG` at the input size
given (MACs = multiply-adds; 1 MAC = 2 FLOPs; mmpretrain's "Flops" columns and
our metafiles' `FLOPs` field hold MACs too). **Paper** is the paper's own
number with where it is stated; none of these models was trained on ImageNet,
COCO or ADE20K here, so there is no such number of ours. What we trained is on
the embedded demo data: [configs/demo/README.md](../configs/demo/README.md).
Which families equal their official implementation: [parity.md](parity.md).

This page is written by `python tools/misc/update_model_zoo.py` from the
metafiles (`tests/test_model_zoo.py` checks that they match the configs).
"""


def _models():
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', '*',
                                          'metafile.yml'))):
        with open(path) as f:
            meta = yaml.safe_load(f)
        collection = meta['Collections'][0]['Name']
        for model in meta['Models']:
            yield collection, model, open(path).read()


def _input(text: str, name: str) -> str:
    """The input size the metafile's FLOPs comment states."""
    block = text[text.index(f'- Name: {name}\n'):]
    line = [ln for ln in block.splitlines() if 'FLOPs:' in ln][0]
    return line.split('MACs at ')[-1].strip() if 'MACs at' in line else ''


def _demo_table() -> list:
    """The demo table of configs/demo/README.md, its links made relative to
    docs/."""
    with open(osp.join(ROOT, 'configs', 'demo', 'README.md')) as f:
        rows = [line for line in f.read().splitlines()
                if line.startswith('|')]
    rows = [re.sub(r'\]\((?!\.\./)([^)]+\.py)\)', r'](../configs/demo/\1)', r)
            for r in rows]
    return [r.replace('](../../', '](../') for r in rows]


def render() -> str:
    out = [HEADER]
    models = list(_models())
    for title, datasets in TASKS:
        rows = [(c, m, t) for c, m, t in models
                if m['Metadata']['Training Data'] in datasets]
        out.append(f'## {title}\n')
        out.append('| family | config | params (M) | MACs (G) | input | '
                   'paper | checkpoint |')
        out.append('|---|---|---|---|---|---|---|')
        for collection, m, text in rows:
            name = m['Name']
            paper, source = PAPER.get(name, ('—', ''))
            paper = f'{paper} ({source})' if source else paper
            weights = m.get('Weights')
            out.append(
                f'| {collection} | [{name}](../{m["Config"]}) | '
                f'{m["Metadata"]["Parameters"] / 1e6:.2f} | '
                f'{m["Metadata"]["FLOPs"] / 1e9:.2f} | '
                f'{_input(text, name)} | {paper} | '
                f'{f"[weights]({weights})" if weights else "—"} |')
        out.append('')
    out.append('## Trained here (embedded demo data)\n')
    out.append('Small models of each family trained on the embedded digits '
               '(`make data`) in minutes on 2 CPU cores; the full table and '
               'notes: [configs/demo/README.md](../configs/demo/README.md).\n')
    out.extend(_demo_table())
    out.append('')
    return '\n'.join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if docs/model_zoo.md is not up to date')
    args = parser.parse_args(argv)
    path = osp.normpath(osp.join(ROOT, 'docs', 'model_zoo.md'))
    text = render()
    if args.check:
        with open(path) as f:
            if f.read() != text:
                sys.exit(f'{path} is stale: run '
                         'tools/misc/update_model_zoo.py')
        return
    with open(path, 'w') as f:
        f.write(text)
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
