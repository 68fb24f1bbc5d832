"""Model analysis: complexity (MACs, FLOPs, parameters) that counts the
attention ops, and the training memory of a config's model."""
from .config_flops import get_flops
from .flops import count_complexity
from .memory import config_input_shape, training_memory

__all__ = ['count_complexity', 'get_flops', 'training_memory',
           'config_input_shape']
