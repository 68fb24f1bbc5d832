from .backbone import EffAttnBackbone
from .norm import eval_norms
from .pretrained import StrictPretrainedMixin, load_pretrained

__all__ = ['EffAttnBackbone', 'StrictPretrainedMixin', 'load_pretrained',
           'eval_norms']
