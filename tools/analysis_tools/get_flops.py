"""Params, MACs and FLOPs of a config's model (attention counted).

FLOPs are reported as the SASA paper counts them (1 multiply-add = 2 FLOPs)
and as MACs (what Swin/NAT and mmengine call "FLOPs").

  python tools/analysis_tools/get_flops.py CONFIG [--shape 224 | --shape H W]

Without ``--shape`` the input is the config's test size (the largest its test
pipeline makes: 224x224 for ImageNet, 800x1333 for mmdet's 1x pipeline,
640x640 for the 640-crop RetinaNet, the crop for mmseg), as the READMEs
quote.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmengine.config import DictAction  # noqa: E402

import mmeffattn  # noqa: E402,F401
from mmeffattn.analysis.config_flops import get_flops  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+',
                        help='input H W (or one size for both)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--show-table', action='store_true')
    args = parser.parse_args(argv)
    shape = None
    if args.shape:
        shape = (args.shape * 2)[:2]
    res = get_flops(args.config, shape, args.cfg_options, args.show_table)
    split = '=' * 40
    if res.get('table'):
        print(res['table'])
    print(f"{split}\nInput shape: {res['shape']}\n"
          f"Params: {res['params'] / 1e6:.2f} M\n"
          f"MACs: {res['macs'] / 1e9:.3f} G\n"
          f"FLOPs (2 x MACs): {res['flops'] / 1e9:.3f} G\n{split}")
    if res['unsupported']:
        print('Uncounted ops (elementwise, as usual):',
              ', '.join(sorted(res['unsupported'])))
    return res


if __name__ == '__main__':
    main()
