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

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

import mmeffattn  # noqa: E402,F401
from mmeffattn.utils.flops import count_complexity  # noqa: E402
from mmeffattn.utils.launch import build_config_model  # noqa: E402
from mmeffattn.utils.memory import config_input_shape  # noqa: E402


def _data_sample(scope: str, height: int, width: int):
    meta = dict(img_shape=(height, width), ori_shape=(height, width),
                pad_shape=(height, width), batch_input_shape=(height, width),
                scale_factor=(1.0, 1.0))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return DetDataSample(metainfo=meta)
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return SegDataSample(metainfo=meta)
    from mmpretrain.structures import DataSample
    return DataSample(metainfo=meta)


class TensorMode(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a one-input module."""

    def __init__(self, model, data_samples):
        super().__init__()
        self.model, self.data_samples = model, data_samples

    def forward(self, inputs):
        return self.model(inputs, self.data_samples, mode='tensor')


def get_flops(config: str, shape=None, cfg_options=None, show_table=False):
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmpretrain')
    height, width = shape or config_input_shape(cfg, 'test')
    model = build_config_model(cfg).eval()
    sample = _data_sample(scope, height, width)
    data = model.data_preprocessor(
        dict(inputs=[torch.zeros(3, height, width, dtype=torch.uint8)],
             data_samples=[sample]), False)
    with torch.no_grad():
        result = count_complexity(
            TensorMode(model, data['data_samples']), (data['inputs'], ),
            show_table)
    result['shape'] = (3, height, width)
    return result


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
