"""mmeffattn: efficient attention for OpenMMLab 2.x (SASA, SeTformer, ...)."""
from .utils.checkpoint import register_checkpoint_policy
from .version import __version__

# Weights-only loading everywhere; full unpickling only when resuming a run's
# own checkpoint (see mmeffattn/utils/checkpoint.py).
register_checkpoint_policy()

__all__ = ['__version__']
