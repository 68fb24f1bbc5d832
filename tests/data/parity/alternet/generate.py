"""Writes ``alternet.pth``: the official AlterNet-50 on deterministic
weights.

Needs a checkout of xxxnell/how-do-vits-work and einops (neither is a
project dependency)::

    PYTHONPATH=/path/to/einops \\
        python tests/data/parity/alternet/generate.py /path/to/how-do-vits-work

The model is the official ``models.alternet.dnn_50(num_classes=10,
window_size=4)`` in fp64 eval mode, its weights from
``synthetic.synthetic_state_dict`` (stored as the layout only, (key, shape)
in the official order). Outputs on ``synthetic.synthetic_input()``, a
(1, 3, 128, 128) image: the logits and the spatial mean of each stage's output.
"""
import importlib.util
import os.path as osp
import subprocess
import sys
import types

import torch

HERE = osp.dirname(osp.abspath(__file__))


def load_official(repo):
    # the package __init__ pulls in the training utilities; the model
    # modules only need each other
    package = types.ModuleType('models')
    package.__path__ = [osp.join(repo, 'models')]
    sys.modules['models'] = package
    sys.path.insert(0, repo)
    import models.alternet as alternet
    return alternet


def main(repo):
    commit = subprocess.check_output(['git', '-C', repo, 'rev-parse',
                                      'HEAD'], text=True).strip()
    spec = importlib.util.spec_from_file_location(
        'synthetic', osp.join(HERE, 'synthetic.py'))
    synthetic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synthetic)
    alternet = load_official(repo)
    model = alternet.dnn_50(num_classes=10, window_size=4).double().eval()
    layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(synthetic.synthetic_state_dict(layout))
    x = synthetic.synthetic_input((1, 3, 128, 128))
    stages = []
    hooks = [getattr(model, f'layer{i}').register_forward_hook(
        lambda m, i, o: stages.append(o.mean((2, 3)))) for i in range(1, 5)]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    params = sum(p.numel() for p in alternet.dnn_50().parameters())
    torch.save(dict(commit=commit, layout=layout, logits=logits,
                    stage_means=stages, num_classes=10, window_size=4,
                    params_alternet50_in1k=params),
               osp.join(HERE, 'alternet.pth'))
    print('how-do-vits-work commit', commit, 'AlterNet-50 params', params)
    print(logits)


if __name__ == '__main__':
    main(sys.argv[1])
