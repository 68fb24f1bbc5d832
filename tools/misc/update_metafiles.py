"""Rewrite ``FLOPs`` and ``Parameters`` of every model in
configs/*/metafile.yml from tools/analysis_tools/get_flops.py, as upstream
metafiles store them:
integer MACs (multiply-adds) at the config's test input size, which a comment
on the line states.

  python tools/misc/update_metafiles.py [configs/sasa/metafile.yml ...]
"""
import glob
import os.path as osp
import re
import sys

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..')
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis_tools'))

from get_flops import get_flops  # noqa: E402


def update(path: str) -> None:
    text = open(path).read()
    blocks = re.split(r'(?m)^(?=  - Name: )', text)
    out = []
    for block in blocks:
        cfg = re.search(r'(?m)^    Config: (\S+)', block)
        if cfg is None or 'FLOPs:' not in block:
            out.append(block)
            continue
        res = get_flops(osp.join(ROOT, cfg.group(1)))
        _, height, width = res['shape']
        block = re.sub(r'(?m)^(      FLOPs: ).*$',
                       rf'\g<1>{int(res["macs"])}  # MACs at {height}x{width}',
                       block)
        block = re.sub(r'(?m)^(      Parameters: ).*$',
                       rf'\g<1>{int(res["params"])}', block)
        print(f'{cfg.group(1)}: {res["params"] / 1e6:.2f} M params, '
              f'{res["macs"] / 1e9:.2f} GMACs at {height}x{width}',
              flush=True)
        out.append(block)
    with open(path, 'w') as f:
        f.write(''.join(out))


if __name__ == '__main__':
    for p in sys.argv[1:] or sorted(
            glob.glob(osp.join(ROOT, 'configs', '*', 'metafile.yml'))):
        update(p)
