"""Convert an official RT-DETR checkpoint (lyuwenyu/RT-DETR, rtdetr_pytorch:
PResNet-18/34/50/101-vd) to ``mmeffattn.RTDETR``.

Usage::

    python tools/model_converters/rtdetr_to_mmeffattn.py SRC DST \
        [--key auto|ema|model] [--config CONFIG]

The key map and its checks: :mod:`mmeffattn.converters.rtdetr`.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

import torch  # noqa: E402

from mmeffattn.converters import common, rtdetr  # noqa: E402


def main():
    parser = common.converter_parser(
        __doc__.split('\n')[0], 'official rtdetr_pytorch')
    parser.add_argument('--key', default='auto',
                        choices=('auto', 'ema', 'model'))
    args = parser.parse_args()
    state = rtdetr.convert(rtdetr.official_state_dict(torch.load(
        args.src, map_location='cpu', weights_only=True), args.key))
    common.save_converted(
        state, args.src, args.dst, 'rtdetr_to_mmeffattn', args.config,
        'mmdet')


if __name__ == '__main__':
    main()
