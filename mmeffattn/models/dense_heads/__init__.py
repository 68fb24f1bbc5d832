from .sasa_retina_head import SASARetinaHead

__all__ = ['SASARetinaHead']
