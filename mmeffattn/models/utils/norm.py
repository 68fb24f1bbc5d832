import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

#: the norms ``norm_eval`` acts on: those with running statistics
NORMS = (_BatchNorm, )


def eval_norms(module: nn.Module) -> None:
    """Put every batch norm of ``module`` in eval mode (``norm_eval=True``,
    as mmpretrain's ResNet); LayerNorm and GroupNorm are left alone."""
    for m in module.modules():
        if isinstance(m, NORMS):
            m.eval()
