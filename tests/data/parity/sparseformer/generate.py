"""Regenerate the SparseFormer golden fixture from the official code, or
compare the full-size models.

Run with the official repository (showlab/sparseformer) checked out::

    python tests/data/parity/sparseformer/generate.py /path/to/sparseformer
    python tests/data/parity/sparseformer/generate.py /path/to/sparseformer \
        --compare t s b

The first form builds the official ``SparseFormer`` of
``imagenet/models/sparseformer.py`` at tiny widths (both constructors take
them; the official classifier is replaced by a 10-class one), adds seeded
noise to every parameter so that no zero-initialised path is idle (stored
as float32, run in float64), runs it on a fixed input in eval mode and in
train mode (drop path 0.3, seeded) and saves ``fixture.pth``: the
official-layout state dict, the input, the outputs, the input gradient of
the train-mode output and the commit.

``--compare`` builds the official T/S/B and ours from
``configs/sparseformer``, maps the same random weights through
``tools/model_converters/sparseformer_to_mmeffattn.py`` and prints the
parameter counts and the largest differences (fp64, 224x224, batch 2) of
the eval logits, the train-mode logits (same seed) and every parameter's
gradient.
"""
import argparse
import importlib.util
import os.path as osp
import subprocess
import sys

import torch

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.abspath(osp.join(HERE, '..', '..', '..', '..'))
# the tiny model: official constructor arguments
OFFICIAL = dict(conv_dim=8, num_latent_tokens=4, token_sampling_points=4,
                width_configurations=[16, 32], block_sizes=[1, 2],
                repeats=[2, 1], drop_path_rate=0.3)
NUM_CLASSES = 10
# the same model in mmeffattn (the official attention has min(d, 64) heads)
OURS = dict(arch=dict(num_tokens=4, embed_dims=(16, 32), cortex_depth=2),
            num_points=4, early_channels=8, num_heads=(16, 32),
            focus_iters=2, drop_path_rate=0.3)
INPUT = (2, 3, 32, 32)
SEED = 0


def import_official(root):
    path = osp.join(root, 'imagenet', 'models', 'sparseformer.py')
    spec = importlib.util.spec_from_file_location('official_sparseformer',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def perturb_(model, scale=0.05, seed=SEED):
    """Every parameter plus seeded noise, rounded to float32."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            p.copy_((p + scale * noise).float())


def run_official(model, x, seed=SEED):
    """(eval logits, eval final RoIs (B, N, 4), train logits, input grad)."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
        _, roi = model(x, return_embedding_and_roi=True)
    model.train()
    torch.manual_seed(seed)
    xg = x.clone().requires_grad_()
    train = model(xg)
    train.pow(2).sum().backward()
    return logits, roi.transpose(0, 1), train.detach(), xg.grad


def make_fixture(root, commit):
    official = import_official(root)
    torch.manual_seed(SEED)
    model = official.SparseFormer(**OFFICIAL)
    model.head.classifier = torch.nn.Linear(OFFICIAL[
        'width_configurations'][-1], NUM_CLASSES)
    perturb_(model)
    state = {k: v.float().clone() for k, v in model.state_dict().items()}
    model.double()
    x = torch.randn(INPUT, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64).float()
    logits, roi, train, grad = run_official(model, x.double())
    fixture = dict(state_dict=state, input=x, logits=logits, roi=roi,
                   train_logits=train, train_input_grad=grad,
                   train_seed=SEED, official_args=OFFICIAL, ours_args=OURS,
                   num_classes=NUM_CLASSES,
                   commit=commit, source='imagenet/models/sparseformer.py')
    torch.save(fixture, osp.join(HERE, 'fixture.pth'))
    print(f'fixture.pth: {len(state)} tensors, commit {commit}')


def compare(root, archs):
    sys.path.insert(0, REPO)
    sys.path.insert(0, osp.join(REPO, 'tools', 'model_converters'))
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from sparseformer_to_mmeffattn import convert

    import mmeffattn  # noqa: F401
    from mmeffattn.registry import MODELS
    official = import_official(root)
    full = dict(t=dict(width_configurations=[256, 512], block_sizes=[1, 8],
                       num_latent_tokens=49, drop_path_rate=0.2),
                s=dict(width_configurations=[320, 640], block_sizes=[1, 8],
                       num_latent_tokens=64, drop_path_rate=0.3),
                b=dict(width_configurations=[384, 768], block_sizes=[1, 10],
                       num_latent_tokens=81, drop_path_rate=0.4))
    init_default_scope('mmpretrain')
    for arch in archs:
        torch.manual_seed(SEED)
        ref = official.SparseFormer(repeats=[4, 1], **full[arch])
        perturb_(ref)
        cfg = Config.fromfile(osp.join(
            REPO, 'configs', 'sparseformer',
            f'sparseformer-{arch}_8xb128_in1k.py'))
        ours = MODELS.build(cfg.model)
        ours.load_state_dict(convert(ref.state_dict()), strict=True)
        ref.double()
        ours.double()
        n_ref = sum(p.numel() for p in ref.parameters())
        n_ours = sum(p.numel() for p in ours.parameters())
        x = torch.randn(2, 3, 224, 224, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(1))
        diffs = {}
        for mode in ('eval', 'train'):
            ref.train(mode == 'train')
            ours.train(mode == 'train')
            ref.zero_grad()
            ours.zero_grad()
            torch.manual_seed(SEED)
            a = ref(x)
            torch.manual_seed(SEED)
            b = ours(x, mode='tensor')
            diffs[mode] = (a - b).abs().max().item()
            if mode == 'train':
                a.pow(2).sum().backward()
                b.pow(2).sum().backward()
        names = convert({k: k for k in dict(ref.named_parameters())})
        ours_params = dict(ours.named_parameters())
        ref_params = dict(ref.named_parameters())
        grad = max((ref_params[old].grad - ours_params[new].grad).abs().max()
                   .item() for new, old in names.items())
        print(f'sparseformer-{arch}: params official {n_ref:,} ours '
              f'{n_ours:,}; max |diff| eval logits {diffs["eval"]:.2e}, '
              f'train logits {diffs["train"]:.2e}, gradients {grad:.2e}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='showlab/sparseformer checkout')
    parser.add_argument('--compare', nargs='+', choices=('t', 's', 'b'))
    args = parser.parse_args()
    if args.compare:
        compare(args.root, args.compare)
        return
    commit = subprocess.check_output(['git', 'rev-parse', 'HEAD'],
                                     cwd=args.root, text=True).strip()
    make_fixture(args.root, commit)


if __name__ == '__main__':
    main()
