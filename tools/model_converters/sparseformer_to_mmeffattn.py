"""Convert an official SparseFormer checkpoint (showlab/sparseformer,
``imagenet/models/sparseformer.py``: the released T/S/B ImageNet-1k files
``sparseformer_{t,s,b}_imagenet1k.pth``) to an mmpretrain
``ImageClassifier`` with ``mmeffattn.SparseFormer``.

Usage::

    python tools/model_converters/sparseformer_to_mmeffattn.py SRC DST \
        [--key auto|model_ema|model] [--config CONFIG]

The key map and its checks: :mod:`mmeffattn.converters.sparseformer`.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

from mmeffattn.converters import common, sparseformer  # noqa: E402


def main():
    parser = common.converter_parser(
        __doc__.split('\n')[0], 'official SparseFormer')
    parser.add_argument('--key', default='auto',
                        choices=('auto', 'model_ema', 'model'))
    args = parser.parse_args()
    state = sparseformer.convert(sparseformer.official_state_dict(
        sparseformer.load_official(args.src), args.key))
    common.save_converted(
        state, args.src, args.dst, 'sparseformer_to_mmeffattn', args.config,
        'mmpretrain')


if __name__ == '__main__':
    main()
