"""A SparseFormer's RoIs and sampling points on an image, as
``tools/analysis_tools/visualize_rois.py`` draws them: for every sampling
step (the focusing passes, then the first cortex unit) one panel shows the
image, each latent token's RoI (a box) and its sampling points (dots of the
same colour), in the input's pixel coordinates."""
import os.path as osp

import torch


def build_classifier(config, checkpoint, trust=False):
    """The config's classifier with the checkpoint's weights (strict, loaded
    weights-only), in eval mode. Raises unless the backbone is a
    SparseFormer."""
    from mmeffattn.models.backbones import SparseFormer
    from mmeffattn.utils.launch import build_checkpoint_model

    def check(cfg):
        kind = cfg.model.get('backbone', {}).get('type')
        if kind not in ('SparseFormer', 'mmeffattn.SparseFormer'):
            raise ValueError(f'{config}: the backbone is {kind}; RoIs exist '
                             'only in mmeffattn.SparseFormer')
    model, _ = build_checkpoint_model(config, checkpoint, check, trust)
    assert isinstance(model.backbone, SparseFormer)
    return model


@torch.no_grad()
def trace_image(model, image_path):
    """Image (H, W, 3) RGB uint8, the trace of the sampling steps and the
    predicted label."""
    import mmcv
    if not osp.isfile(image_path):
        raise FileNotFoundError(f'image file {image_path} does not exist')
    rgb = mmcv.imread(image_path, channel_order='rgb')
    bgr = torch.from_numpy(rgb[..., ::-1].copy()).permute(2, 0, 1)
    data = model.data_preprocessor(dict(inputs=[bgr]), False)
    trace = []
    tokens = model.backbone.forward_tokens(data['inputs'], trace)
    feats = (model.backbone.norm(tokens.mean(1)), )
    label = int(model.head(feats).argmax(-1)[0])
    return rgb, trace, label


def draw(rgb, trace, label, path, tokens=None, classes=None):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    h, w = rgb.shape[:2]
    n = trace[0]['roi'].shape[1]
    tokens = list(range(n)) if tokens is None else tokens
    bad = [t for t in tokens if not 0 <= t < n]
    if bad:
        raise ValueError(f'--tokens {bad} out of range: the model has {n} '
                         'latent tokens')
    steps = len(trace)
    fig, axes = plt.subplots(1, steps, figsize=(2.6 * steps, 2.9))
    colours = plt.get_cmap('tab20')
    names = [f'focus {i + 1}' for i in range(steps - 1)] + ['cortex 1']
    for ax, step, name in zip(axes, trace, names):
        ax.imshow(rgb, extent=(0, w, h, 0), interpolation='nearest')
        for t in tokens:
            c = colours(t % 20)
            x1, y1, x2, y2 = (step['roi'][0, t] * torch.tensor(
                [w, h, w, h])).tolist()
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                   edgecolor=c, linewidth=0.8))
            pts = step['points'][0, t] * torch.tensor([w, h])
            ax.scatter(pts[:, 0], pts[:, 1], s=4, color=c)
        ax.set_xlim(-0.25 * w, 1.25 * w)
        ax.set_ylim(1.25 * h, -0.25 * h)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    pred = classes[label] if classes else label
    fig.suptitle(f'{len(tokens)} of {n} tokens: RoIs and sampling points; '
                 f'predicted {pred}', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
