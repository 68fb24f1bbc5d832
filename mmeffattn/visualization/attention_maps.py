"""What the attention of a trained model does on an image, as
``tools/analysis_tools/visualize_attention.py`` draws it.

- SASA (``LocalSelfAttention2d``): the k x k softmax weights of chosen query
  pixels, one panel per head, overlaid on the image where the window lies.
- SeT (``SeTAttention``): the transport plans -- each reference's mass over
  the image (T^k), and each query's mixture over the references (N T^q) with
  the attention map it implies (N m T^q T^k^T, a row of the effective
  attention).
- Detectors: the painted predictions (mmdet's visualizer).
"""
import os.path as osp

import torch


def load_model(config, checkpoint, trust=False):
    from mmeffattn.utils.launch import build_checkpoint_model
    return build_checkpoint_model(config, checkpoint, trust=trust)


def attention_layers(model):
    from mmeffattn.models.attention import LocalSelfAttention2d, SeTAttention
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, (LocalSelfAttention2d, SeTAttention))]


def capture_input(model, layer, inputs):
    """Run the backbone; return the positional args the layer received."""
    seen = {}

    def hook(module, args):
        seen.setdefault('args', args)
    handle = layer.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            model.backbone(inputs)
    finally:
        handle.remove()
    return seen['args']


def preprocess(model, image_path):
    import mmcv
    if not osp.isfile(image_path):
        raise FileNotFoundError(f'image file {image_path} does not exist')
    bgr = mmcv.imread(image_path)
    tensor = torch.from_numpy(bgr.copy()).permute(2, 0, 1)
    data = model.data_preprocessor(dict(inputs=[tensor]), False)
    return bgr[..., ::-1].copy(), data['inputs']


def query_cells(points, height, width):
    cells = []
    for p in points:
        y, x = (float(v) for v in p.split(','))
        cells.append((min(int(y * height), height - 1),
                      min(int(x * width), width - 1)))
    return cells


def draw_sasa(rgb, layer, x, points, out_dir, name):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    weights = layer.attention_weights(x)[0]           # (h, k*k, H, W)
    heads, _, height, width = weights.shape
    k, r = layer.kernel_size, layer.kernel_size // 2
    sy, sx = rgb.shape[0] / height, rgb.shape[1] / width
    cells = query_cells(points, height, width)
    fig, axes = plt.subplots(len(cells), heads, squeeze=False,
                             figsize=(2.2 * heads, 2.3 * len(cells)))
    record = []
    for qi, (i, j) in enumerate(cells):
        for h in range(heads):
            w = weights[h, :, i, j].view(k, k).numpy()
            record.append(dict(query=[i, j], head=h, weights=w.tolist()))
            ax = axes[qi, h]
            ax.imshow(rgb, extent=(0, rgb.shape[1], rgb.shape[0], 0))
            ax.imshow(w, cmap='inferno', alpha=0.65, vmin=0,
                      extent=((j - r) * sx, (j + r + 1) * sx,
                              (i + r + 1) * sy, (i - r) * sy))
            ax.scatter([(j + .5) * sx], [(i + .5) * sy], s=12, c='cyan')
            ax.set_xlim(0, rgb.shape[1])
            ax.set_ylim(rgb.shape[0], 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if qi == 0:
                ax.set_title(f'head {h}', fontsize=8)
    fig.suptitle(f'{name}: {k}x{k} SASA weights of {len(cells)} queries '
                 f'({height}x{width} map)', fontsize=9)
    fig.tight_layout()
    path = osp.join(out_dir, 'sasa_weights.png')
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path, dict(kind='sasa', layer=name, queries=record)


def draw_set(rgb, layer, x, hw_shape, points, out_dir, name):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    plan_q, plan_k = layer.transport_plans(x, hw_shape)
    height, width = hw_shape
    n, m = plan_k.shape[-2:]
    tq, tk = plan_q[0, 0], plan_k[0, 0]                # head 0: (N, m)
    extent = (0, rgb.shape[1], rgb.shape[0], 0)
    shown = min(m, 16)
    cols = min(8, shown)
    rows = -(-shown // cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(1.6 * cols, 1.7 * rows))
    for j, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= shown:
            ax.axis('off')
            continue
        ax.imshow(rgb, extent=extent)
        ax.imshow((m * tk[:, j]).view(height, width).numpy(), cmap='magma',
                  alpha=0.7, extent=extent, interpolation='nearest')
        ax.set_title(f'ref {j}', fontsize=7)
    fig.suptitle(f'{name}, head 0: where each reference takes its mass '
                 f'(m T^k, {shown} of {m} references)', fontsize=9)
    fig.tight_layout()
    ref_path = osp.join(out_dir, 'set_references.png')
    fig.savefig(ref_path, dpi=100)
    plt.close(fig)

    cells = query_cells(points, height, width)
    fig, axes = plt.subplots(2, len(cells), squeeze=False,
                             figsize=(2.6 * len(cells), 4.8))
    record = []
    for qi, (i, j) in enumerate(cells):
        token = i * width + j
        mixture = n * tq[token]                        # sums to 1
        attn = n * m * tq[token] @ tk.T                # a row of A
        record.append(dict(query=[i, j], mixture=mixture.tolist(),
                           attention=attn.tolist()))
        axes[0, qi].bar(range(m), mixture.numpy(), color='tab:blue')
        axes[0, qi].set_title(f'query ({i},{j}): mixture', fontsize=8)
        axes[0, qi].set_xlabel('reference', fontsize=7)
        ax = axes[1, qi]
        ax.imshow(rgb, extent=extent)
        ax.imshow(attn.view(height, width).numpy(), cmap='inferno',
                  alpha=0.65, extent=extent, interpolation='nearest')
        ax.scatter([(j + .5) * rgb.shape[1] / width],
                   [(i + .5) * rgb.shape[0] / height], s=14, c='cyan')
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title('its attention N m T^q T^k^T', fontsize=8)
    fig.suptitle(f'{name}, head 0: each query\'s mixture over the '
                 'references', fontsize=9)
    fig.tight_layout()
    query_path = osp.join(out_dir, 'set_queries.png')
    fig.savefig(query_path, dpi=100)
    plt.close(fig)
    return [ref_path, query_path], dict(kind='set', layer=name,
                                        queries=record)


def draw_detections(config, checkpoint, image, out_dir, score_thr):
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=config, weights=checkpoint,
                               device='cpu', show_progress=False)
    result = inferencer(image, out_dir=out_dir, pred_score_thr=score_thr)
    stem = osp.basename(image)
    return osp.join(out_dir, 'vis', stem), result['predictions'][0]
