import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

NORMS = (_BatchNorm, nn.LayerNorm, nn.GroupNorm)


def eval_norms(module: nn.Module) -> None:
    """Put every norm layer of ``module`` in eval mode (``norm_eval=True``)."""
    for m in module.modules():
        if isinstance(m, NORMS):
            m.eval()
