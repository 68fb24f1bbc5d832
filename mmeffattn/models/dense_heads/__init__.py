from .rtdetr_head import RTDETRHead
from .sasa_retina_head import SASARetinaHead

__all__ = ['SASARetinaHead', 'RTDETRHead']
