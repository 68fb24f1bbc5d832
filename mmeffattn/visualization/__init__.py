"""Drawings of what the models compute (attention weights and transport
plans, SparseFormer's RoIs), as the analysis tools write them."""
from .attention_maps import (attention_layers, capture_input, draw_sasa,
                             draw_set, load_model, preprocess)
from .sparseformer_rois import build_classifier, trace_image

__all__ = ['attention_layers', 'capture_input', 'draw_sasa', 'draw_set',
           'load_model', 'preprocess', 'build_classifier', 'trace_image']
