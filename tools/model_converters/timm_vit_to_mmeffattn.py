"""Convert a timm ``VisionTransformer`` checkpoint (ViT, DeiT without the
distillation token; the layout ToMe's official patch runs on) to an
mmpretrain ``ImageClassifier`` with ``VisionTransformer`` keys: the model
of the ToMe configs (``mmeffattn.ToMeVisionTransformer`` +
``VisionTransformerClsHead``), which has the same keys.

Usage::

    python tools/model_converters/timm_vit_to_mmeffattn.py SRC DST \
        [--config CONFIG]

The key map and its checks: :mod:`mmeffattn.converters.timm_vit`.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

import torch  # noqa: E402

from mmeffattn.converters import common, timm_vit  # noqa: E402


def main():
    parser = common.converter_parser(
        __doc__.split('\n')[0], 'timm ViT/DeiT')
    args = parser.parse_args()
    state = timm_vit.convert(timm_vit.timm_state_dict(torch.load(
        args.src, map_location='cpu', weights_only=True)))
    common.save_converted(
        state, args.src, args.dst, 'timm_vit_to_mmeffattn', args.config,
        'mmpretrain')


if __name__ == '__main__':
    main()
