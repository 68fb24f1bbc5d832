"""Convert an official AlterNet checkpoint (xxxnell/how-do-vits-work,
``models/alternet.py``: ``dnn_50`` / ``dnn_101`` with the ImageNet stem) to
an mmpretrain ``ImageClassifier`` with ``mmeffattn.AlterNet``
(``out_indices=(3,)``), ``GlobalAveragePooling`` and ``LinearClsHead``, as
in ``configs/alternet/alternet-50_8xb32_in1k.py``.

Usage::

    python tools/model_converters/alternet_to_mmeffattn.py SRC DST \
        [--config CONFIG]

The key map and its checks: :mod:`mmeffattn.converters.alternet`.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

import torch  # noqa: E402

from mmeffattn.converters import alternet, common  # noqa: E402


def main():
    parser = common.converter_parser(
        __doc__.split('\n')[0], 'official AlterNet')
    args = parser.parse_args()
    state = alternet.convert(alternet.official_state_dict(torch.load(
        args.src, map_location='cpu', weights_only=True)))
    common.save_converted(
        state, args.src, args.dst, 'alternet_to_mmeffattn', args.config,
        'mmpretrain')


if __name__ == '__main__':
    main()
