"""Params, MACs and FLOPs of a config's model at an input size (attention
counted), as ``tools/analysis_tools/get_flops.py`` prints them."""
import torch
import torch.nn as nn
from mmengine.config import Config

from mmeffattn.utils.launch import build_config_model

from .flops import count_complexity
from .memory import config_input_shape


def _data_sample(scope: str, height: int, width: int):
    meta = dict(img_shape=(height, width), ori_shape=(height, width),
                pad_shape=(height, width), batch_input_shape=(height, width),
                scale_factor=(1.0, 1.0))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        return DetDataSample(metainfo=meta)
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return SegDataSample(metainfo=meta)
    from mmpretrain.structures import DataSample
    return DataSample(metainfo=meta)


class TensorMode(nn.Module):
    """``model(inputs, data_samples, mode='tensor')`` as a one-input module."""

    def __init__(self, model, data_samples):
        super().__init__()
        self.model, self.data_samples = model, data_samples

    def forward(self, inputs):
        return self.model(inputs, self.data_samples, mode='tensor')


def get_flops(config: str, shape=None, cfg_options=None, show_table=False):
    """:func:`count_complexity` of the model of ``config`` on one zero image
    of ``shape`` (H, W; default: the config's test input size), with
    ``shape`` (3, H, W) added to the result."""
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmpretrain')
    height, width = shape or config_input_shape(cfg, 'test')
    model = build_config_model(cfg).eval()
    sample = _data_sample(scope, height, width)
    data = model.data_preprocessor(
        dict(inputs=[torch.zeros(3, height, width, dtype=torch.uint8)],
             data_samples=[sample]), False)
    with torch.no_grad():
        result = count_complexity(
            TensorMode(model, data['data_samples']), (data['inputs'], ),
            show_table)
    result['shape'] = (3, height, width)
    return result
