"""init_cfg=Pretrained: a checkpoint whose keys do not match the backbone,
or a prefix that selects nothing, is refused by name."""
import pytest
import torch


def test_pretrained_key_mismatch_is_loud(tmp_path):
    from mmeffattn.models import SASAResNet, SeTformer
    from mmeffattn.utils import CheckpointError
    path = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in SeTformer(
        'tiny').state_dict().items()}), path)
    model = SASAResNet(26, init_cfg=dict(type='Pretrained', checkpoint=path,
                                         prefix='backbone.'))
    with pytest.raises(CheckpointError, match='missing'):
        model.init_weights()
    model = SASAResNet(26, init_cfg=dict(type='Pretrained', checkpoint=path,
                                         prefix='neck.'))
    with pytest.raises(CheckpointError, match="prefix 'neck.'"):
        model.init_weights()
