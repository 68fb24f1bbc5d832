"""tools/analysis_tools/visualize_attention.py on the published SASA and SeT
demo classifiers: it writes its pictures, and the weights it draws are the
model's: they sum to 1 per query and reproduce the layer's output."""
import glob
import json
import os.path as osp

import pytest
import torch
from helpers import DEMO, REPO, published_checkpoint, run_tool

from mmeffattn.visualization import attention_maps

TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'visualize_attention.py')
SASA = osp.join(DEMO, 'sasa-r26-demo_1xb64-20e_digits.py')
SET = osp.join(DEMO, 'setformer-demo_1xb64-30e_digits.py')


def _published(cfg):
    return published_checkpoint(osp.splitext(osp.basename(cfg))[0])


def _image(demo_cwd):
    return sorted(glob.glob(osp.join(demo_cwd, 'data', 'demo', 'cls', 'val',
                                     '*', '*.png')))[0]


@pytest.mark.slow
def test_sasa_weights_are_the_layers(demo_cwd, tmp_path):
    image = _image(demo_cwd)
    run_tool([TOOL, SASA, _published(SASA), image, '--out', str(tmp_path),
              '--points', '0.5,0.5', '0.1,0.9'], cwd=demo_cwd)
    assert (tmp_path / 'sasa_weights.png').stat().st_size > 10_000
    record = json.load(open(tmp_path / 'attention.json'))
    assert record['kind'] == 'sasa' and len(record['queries']) == 2 * 4
    tool = attention_maps
    model, _ = tool.load_model(SASA, _published(SASA))
    layer = dict(tool.attention_layers(model))[record['layer']]
    _, inputs = tool.preprocess(model, image)
    x, = tool.capture_input(model, layer, inputs)
    weights = layer.attention_weights(x)            # (1, h, k*k, H, W)
    k = layer.kernel_size
    for q in record['queries']:
        (i, j), h = q['query'], q['head']
        drawn = torch.tensor(q['weights'])
        assert drawn.sum().item() == pytest.approx(1, abs=1e-5)
        torch.testing.assert_close(drawn, weights[0, h, :, i, j].view(k, k))
    # the weights reproduce the layer's forward (its C++ kernel) at (i, j)
    assert layer.stride == 1
    v = layer.value(x)[0]                           # (C, H, W)
    d = v.shape[0] // layer.num_heads
    padded = torch.nn.functional.pad(v, [k // 2] * 4)
    with torch.no_grad():
        out = layer(x)[0]
    i, j = record['queries'][0]['query']
    for h in range(layer.num_heads):
        window = padded[h * d:(h + 1) * d, i:i + k, j:j + k].reshape(d, -1)
        torch.testing.assert_close(window @ weights[0, h, :, i, j],
                                   out[h * d:(h + 1) * d, i, j],
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_set_plans_are_the_layers(demo_cwd, tmp_path):
    image = _image(demo_cwd)
    run_tool([TOOL, SET, _published(SET), image, '--out', str(tmp_path)],
             cwd=demo_cwd)
    for png in ('set_references.png', 'set_queries.png'):
        assert (tmp_path / png).stat().st_size > 10_000
    record = json.load(open(tmp_path / 'attention.json'))
    assert record['kind'] == 'set' and len(record['queries']) == 3
    for q in record['queries']:
        assert sum(q['mixture']) == pytest.approx(1, abs=1e-4)
        assert sum(q['attention']) == pytest.approx(1, abs=1e-4)
    tool = attention_maps
    model, _ = tool.load_model(SET, _published(SET))
    layer = dict(tool.attention_layers(model))[record['layer']]
    _, inputs = tool.preprocess(model, image)
    x, hw = tool.capture_input(model, layer, inputs)
    plan_q, plan_k = layer.transport_plans(x, hw)
    n, m = plan_k.shape[-2:]
    attn = n * m * plan_q[0] @ plan_k[0].transpose(-1, -2)   # (h, N, N)
    height, width = hw
    for q in record['queries']:
        i, j = q['query']
        torch.testing.assert_close(torch.tensor(q['attention']),
                                   attn[0, i * width + j], atol=1e-5,
                                   rtol=1e-4)
    # the drawn plans reproduce the layer's output
    heads = layer.num_heads
    v = layer.qkv(x).view(1, n, 3, heads, -1)[:, :, 2].transpose(1, 2)
    mixed = (attn @ v[0]).transpose(0, 1).reshape(1, n, -1)
    with torch.no_grad():
        torch.testing.assert_close(layer.proj(mixed), layer(x, hw),
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_names_a_missing_layer(demo_cwd, tmp_path):
    proc = run_tool([TOOL, SASA, _published(SASA), _image(demo_cwd),
                     '--out', str(tmp_path), '--layer', 'backbone.nope'],
                    cwd=demo_cwd, check=False)
    assert proc.returncode != 0
    assert "--layer 'backbone.nope' is not an attention layer" in proc.stderr
