"""Official checkpoints to mmeffattn models: one module per family with its
key map (``map_key``, ``convert``), and what they share (``common``). The
command lines are ``tools/model_converters/<family>_to_mmeffattn.py``."""
from . import alternet, common, rtdetr, sparseformer, timm_vit

__all__ = ['alternet', 'common', 'rtdetr', 'sparseformer', 'timm_vit']
