from .backbone import (EffAttnBackbone, check_divisible, check_frozen_stages,
                       check_image_batch, check_int, check_number,
                       check_out_indices, check_square, check_vit_input,
                       set_vit_stages)
from .norm import eval_norms
from .pretrained import StrictPretrainedMixin, load_pretrained

__all__ = ['EffAttnBackbone', 'StrictPretrainedMixin', 'load_pretrained',
           'eval_norms', 'check_int', 'check_number', 'check_divisible',
           'check_square', 'check_out_indices', 'check_frozen_stages',
           'check_image_batch', 'check_vit_input', 'set_vit_stages']
