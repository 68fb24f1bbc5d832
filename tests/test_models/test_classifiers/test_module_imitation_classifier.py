"""RIFormer's recipe (ModuleImitationClassifier) and mmpretrain's RIFormer
re-parameterisation."""
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import mmeffattn.models  # noqa: F401
from mmeffattn.models import ModuleImitationClassifier

ARCH = dict(layers=[1, 1, 2, 1], embed_dims=[8, 16, 24, 32],
            mlp_ratios=[2, 2, 2, 2], layer_scale_init_value=1e-5)


def classifier(backbone_type, arch=ARCH):
    return dict(
        type='ImageClassifier',
        backbone=dict(type=backbone_type, arch=arch, in_patch_size=3,
                      in_stride=2, in_pad=1),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=10,
                  in_channels=arch['embed_dims'][-1]))


def build(tmp_path, student_arch=ARCH, **kwargs):
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    teacher = MODELS.build(classifier('PoolFormer'))
    teacher.init_weights()
    for p in teacher.parameters():  # not the init values: a trained look
        p.data.add_(torch.randn_like(p) * 0.1)
    path = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict(), meta={}), path)
    student = classifier('RIFormer', student_arch)
    student.pop('type')
    model = ModuleImitationClassifier(
        teacher=classifier('PoolFormer'), teacher_checkpoint=path,
        **student, **kwargs)
    model.init_weights()
    return model, teacher


def test_student_starts_from_teacher_but_token_mixer(tmp_path):
    model, teacher = build(tmp_path)
    given = teacher.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith('teacher.'):
            assert torch.equal(value, given[key[len('teacher.'):]])
        elif 'token_mixer' not in key:
            assert torch.equal(value, given[key]), key
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert not model.teacher.training


def test_losses_equal_hand_computation_and_ignore_labels(tmp_path):
    from mmpretrain.structures import DataSample
    model, teacher = build(tmp_path, temperature=2.0, imitation_weight=0.5)
    model.train()
    x = torch.randn(3, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in range(3)]
    losses = model.loss(x, samples)
    assert set(losses) == {'loss_kd', 'loss_imitation'}
    # by hand: logits and block outputs of both networks
    teacher.eval()

    def blocks(backbone, x):
        feats, x = [], backbone.patch_embed(x)
        for stage in backbone.network:
            for block in (stage if isinstance(stage, torch.nn.Sequential)
                          else []):
                x = block(x)
                feats.append(x)
            if not isinstance(stage, torch.nn.Sequential):
                x = stage(x)
        return feats
    with torch.no_grad():
        t_logits = teacher(x, mode='tensor')
        t_feats = blocks(teacher.backbone, x)
        s_logits = model(x, mode='tensor')
        s_feats = blocks(model.backbone, x)
    assert len(s_feats) == 5
    kd = 4 * F.kl_div(F.log_softmax(s_logits / 2, 1),
                      F.softmax(t_logits / 2, 1), reduction='batchmean')
    imitation = 0.5 * sum(F.mse_loss(s, t) for s, t in zip(s_feats, t_feats))
    torch.testing.assert_close(losses['loss_kd'].detach(), kd)
    torch.testing.assert_close(losses['loss_imitation'].detach(), imitation)
    # no ground truth in the recipe: other labels, the same losses
    other = [DataSample().set_gt_label(9 - i) for i in range(3)]
    torch.testing.assert_close(model.loss(x, other)['loss_kd'],
                               losses['loss_kd'])
    # every student parameter learns, the teacher does not
    sum(model.loss(x, samples).values()).backward()
    for name, p in model.named_parameters():
        assert (p.grad is None) == name.startswith('teacher.'), name


def test_mismatched_student_is_named(tmp_path):
    other = dict(ARCH, embed_dims=[8, 16, 24, 40])
    with pytest.raises(ValueError, match='only token-mixer weights'):
        build(tmp_path, student_arch=other)
    with pytest.raises(ValueError, match='pairs them one to one'):
        build(tmp_path, student_arch=dict(ARCH, layers=[1, 1, 1, 1]))
    with pytest.raises(FileNotFoundError, match='teacher config'):
        ModuleImitationClassifier(teacher='no/such/config.py',
                                  **{k: v for k, v in classifier(
                                      'RIFormer').items() if k != 'type'})


class OpCounter(TorchFunctionMode):

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def test_riformer_switch_to_deploy_keeps_outputs_and_removes_work():
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    model = MODELS.build(classifier('RIFormer'))
    model.init_weights()
    for name, p in model.named_parameters():  # non-trivial affine mixers
        if 'token_mixer' in name or 'norm1' in name:
            p.data.add_(torch.randn_like(p) * 0.3)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), OpCounter() as before:
        ref = model(x, mode='tensor')
    model.backbone.switch_to_deploy()
    with torch.no_grad(), OpCounter() as after:
        out = model(x, mode='tensor')
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # each block loses its token mixer (a per-channel affine and a
    # subtraction): fewer ops in the forward
    assert after.count < before.count
    assert not any('token_mixer' in n for n, _ in model.named_modules())
