"""SeTAttention (the module): shapes, permutation equivariance, gradcheck,
low precision, refused arguments, batch chunks, and reference positions in
the model's dtype."""
import pytest
import torch
from helpers import assert_same_set_attention

from mmeffattn.models import SeTAttention
from mmeffattn.ops import grid_positions, squared_distances


@pytest.mark.parametrize('hw', [(7, 5), (1, 1), (14, 14)])
@pytest.mark.parametrize('feature_map', ['nystrom', 'linear'])
def test_shapes(hw, feature_map):
    attn = SeTAttention(32, 4, num_refs=9, feature_map=feature_map)
    x = torch.randn(2, hw[0] * hw[1], 32)
    out = attn(x, hw)
    assert out.shape == x.shape
    out.sum().backward()
    assert attn.refs.grad is not None and torch.isfinite(attn.refs.grad).all()


def test_permutation_equivariant_without_positions():
    attn = SeTAttention(16, 2, num_refs=4, pos_penalty=False).eval()
    x = torch.randn(1, 12, 16)
    perm = torch.randperm(12)
    torch.testing.assert_close(attn(x[:, perm], (3, 4)),
                               attn(x, (3, 4))[:, perm], atol=1e-5, rtol=1e-5)


def test_gradcheck_fp64():
    attn = SeTAttention(8, 2, num_refs=4).double()
    x = torch.randn(1, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t, (2, 3)), (x, ))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_no_nan(dtype):
    attn = SeTAttention(32, 4, num_refs=9).to(dtype)
    x = (torch.randn(2, 35, 32) * 1e3).to(dtype)
    out = attn(x, (5, 7))
    assert out.dtype == dtype and torch.isfinite(out).all()


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_refs=10), 'perfect square'),
    (dict(num_iters=0), 'num_iters=0 is invalid; it must be an int >= 1'),
    (dict(num_heads=3), 'divisible'),
    (dict(feature_map='rff'), 'feature_map'),
])
def test_bad_arguments(kwargs, match):
    args = dict(embed_dims=32, num_heads=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        SeTAttention(**args)


def test_hw_mismatch():
    with pytest.raises(ValueError, match='hw_shape'):
        SeTAttention(16, 2, num_refs=4)(torch.randn(1, 10, 16), (3, 4))


def test_batch_chunks_equal_one_chunk():
    """The fused CPU path's batch chunks (qkv_chunk_bytes) change nothing:
    outputs, input and parameter gradients equal one whole-batch chunk, with
    and without a mask; chunking is off where asked (0) and off GPU."""
    torch.manual_seed(0)
    chunked = SeTAttention(16, 2, num_refs=9, qkv_chunk_bytes=1).double()
    whole = SeTAttention(16, 2, num_refs=9, qkv_chunk_bytes=0).double()
    whole.load_state_dict(chunked.state_dict())
    x = torch.randn(5, 15, 16, dtype=torch.float64)
    assert whole.batch_chunk(x) == 5
    threads = torch.get_num_threads()
    if chunked.batch_chunk(x) == 5:
        pytest.skip('no CPU kernel here (or too many threads to chunk)')
    assert chunked.batch_chunk(x) == max(1, -(-threads // 2))
    mask = torch.ones(5, 15, dtype=torch.bool)
    mask[3, -4:] = False
    assert_same_set_attention(chunked, whole, x, (5, 3), (None, mask))


def test_fp64_model_uses_fp64_reference_positions():
    """SeTAttention's reference positions follow the model's dtype: in an
    fp64 model the token-to-reference distances are the fp64 grid's, not a
    cast of an fp32 grid (off by ~1e-8)."""
    module = SeTAttention(embed_dims=12, num_heads=2, num_refs=9).double()
    dist2 = module.grid_distances(5, 7, torch.device('cpu'), torch.float64)
    exact = squared_distances(grid_positions(5, 7, dtype=torch.float64),
                              grid_positions(3, 3, dtype=torch.float64))
    assert dist2.dtype == torch.float64
    assert torch.equal(dist2, exact)
