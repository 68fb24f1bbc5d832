"""Mixed precision as mmengine's AmpOptimWrapper runs it: the forward inside
autocast, the backward outside. bf16 on the CPU (what CI has)."""
import glob
import os
import os.path as osp

import pytest
import torch
from helpers import CLS_CFG, REPO, SET_CFG

from mmeffattn.ops import local_attention2d

# (demo config, backbone options): each backbone in a training step of its
# published demo classifier on real digits. A trained model is what a
# mixed-precision run spends its time in; at random init these deep
# attention nets are chaotic (in fp32 a 1e-3 input change already moves the
# gradient to cosine ~0.93), so init says little about precision.
CASES = {
    'SASAResNet-cpp': (CLS_CFG, dict(impl='cpp')),
    'SASAResNet-halo': (CLS_CFG, dict(impl='halo')),
    'SeTformer': (SET_CFG, dict()),
}


def _classifier_and_batch(config, backbone_opts, cwd):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    from mmeffattn.utils import load_checkpoint_file
    cfg = Config.fromfile(config)
    cfg.model.backbone.update(backbone_opts)
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    name = osp.splitext(osp.basename(config))[0]
    ckpt, = glob.glob(osp.join(REPO, 'checkpoints', 'demo', f'{name}_*.pth'))
    model.load_state_dict(load_checkpoint_file(ckpt)['state_dict'])
    # a fixed batch of 128: over batches of the full demo data the SASA
    # cosines range 0.993-0.997 (0.990-0.997 with 32 images)
    loader = dict(cfg.train_dataloader, batch_size=128, num_workers=0,
                  persistent_workers=False,
                  sampler=dict(type='DefaultSampler', shuffle=True, seed=0))
    cwd_before = os.getcwd()
    os.chdir(cwd)
    try:
        batch = next(iter(Runner.build_dataloader(loader)))
    finally:
        os.chdir(cwd_before)
    model.train()
    return model, model.data_preprocessor(batch, True)


def _train_step(model, data, dtype=None):
    """Flattened parameter gradients of one training step: the forward in
    autocast (when ``dtype``), the backward outside, as AmpOptimWrapper."""
    model.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=dtype or torch.bfloat16,
                        enabled=dtype is not None):
        loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)
    return torch.cat([g.flatten().double() for g in grads])


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(CASES))
def test_bf16_training_step_matches_fp32(name, demo_cwd):
    torch.manual_seed(0)
    model, data = _classifier_and_batch(*CASES[name], demo_cwd)
    ref = _train_step(model, data)
    bf16 = _train_step(model, data, torch.bfloat16)
    assert torch.isfinite(bf16).all()
    cos = torch.nn.functional.cosine_similarity(ref, bf16, dim=0)
    print(f'{name}: bf16 vs fp32 gradient cosine {cos.item():.5f}')
    assert cos >= 0.99


@pytest.mark.parametrize('impl', ['cpp', 'halo'])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_local_attention_low_precision_backward_outside_autocast(
        impl, dtype):
    torch.manual_seed(0)
    shape = (2, 2, 9, 11, 8)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    rel_row, rel_col = (torch.randn(5, 4, requires_grad=True)
                        for _ in range(2))
    with torch.autocast('cpu', dtype=dtype):
        # low-precision activations as a conv under autocast produces them
        out = local_attention2d(q.to(dtype), k.to(dtype), v.to(dtype),
                                rel_row, rel_col, 5, impl=impl)
    assert out.dtype == dtype
    out.float().square().sum().backward()
    ref = local_attention2d(q.detach(), k.detach(), v.detach(),
                            rel_row.detach(), rel_col.detach(), 5, impl=impl)
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.05)
    for t in (q, k, v, rel_row, rel_col):
        assert t.grad is not None and torch.isfinite(t.grad).all()
