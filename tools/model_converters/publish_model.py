"""Make a training checkpoint a model-zoo checkpoint.

Keeps only ``state_dict`` and ``meta`` (tensors and plain data, so it loads
with ``torch.load(weights_only=True)``) and names the file
``<name>_<YYYYMMDD>-<sha256[:8]>.pth``.

The input loads weights-only; a training checkpoint (its ``message_hub``
pickles objects) needs ``--trust-checkpoint``, which runs its pickled code:
pass it for your own files only.
"""
import argparse
import datetime
import hashlib
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))

import torch  # noqa: E402

from mmeffattn.utils.checkpoint import add_trust_argument  # noqa: E402
from mmeffattn.utils.checkpoint import load_checkpoint_file  # noqa: E402

PLAIN = (str, int, float, bool, type(None))


def _plain(obj):
    """Keep plain data only (str/int/float/bool/None, lists, tuples, dicts)."""
    if isinstance(obj, PLAIN):
        return obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(x) for x in obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if hasattr(obj, 'item') and getattr(obj, 'ndim', 1) == 0:
        return obj.item()  # numpy / torch scalar
    return str(obj)


def publish(in_file: str, out_name: str, date: str = None,
            trust: bool = False) -> str:
    """Write ``<out_name>_<date>-<sha8>.pth`` next to ``out_name``.
    ``trust`` fully unpickles ``in_file`` (``--trust-checkpoint``)."""
    if not osp.isfile(in_file):
        raise FileNotFoundError(f'checkpoint {in_file} does not exist')
    ckpt = load_checkpoint_file(in_file, trust=trust)
    state = ckpt.get('state_dict', ckpt)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{in_file}: state_dict holds non-tensor values')
    meta = _plain(ckpt.get('meta') or {})
    meta = meta if isinstance(meta, dict) else {}
    meta.pop('hook_msgs', None)
    date = date or datetime.date.today().strftime('%Y%m%d')
    base = out_name[:-4] if out_name.endswith('.pth') else out_name
    os.makedirs(osp.dirname(osp.abspath(base)), exist_ok=True)
    tmp = f'{base}.tmp.pth'
    torch.save(dict(state_dict={k: v.detach().cpu().contiguous()
                                for k, v in state.items()}, meta=meta), tmp)
    with open(tmp, 'rb') as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    final = f'{base}_{date}-{sha[:8]}.pth'
    os.replace(tmp, final)
    return final


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('in_file', help='training checkpoint')
    parser.add_argument('out_name', help='output name, e.g. '
                        'work_dirs/sasa-r26_32xb128-130e_in1k')
    parser.add_argument('--date', help='YYYYMMDD (default: today)')
    add_trust_argument(parser)
    args = parser.parse_args(argv)
    final = publish(args.in_file, args.out_name, args.date,
                    args.trust_checkpoint)
    print(final)
    return final


if __name__ == '__main__':
    main()
