from .demo_data import (CLASSES, SEG_CLASSES, SEG_PALETTE, check_data_root,
                        generate_demo_data, load_digits_split)

__all__ = ['CLASSES', 'SEG_CLASSES', 'SEG_PALETTE', 'generate_demo_data',
           'load_digits_split', 'check_data_root']
