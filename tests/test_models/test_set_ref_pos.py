"""SeTAttention's reference positions follow the model's dtype: in an fp64
model the token-to-reference distances are the fp64 grid's, not a cast of
an fp32 grid (off by ~1e-8)."""
import torch

from mmeffattn.models import SeTAttention
from mmeffattn.ops import grid_positions, squared_distances


def test_fp64_model_uses_fp64_reference_positions():
    module = SeTAttention(embed_dims=12, num_heads=2, num_refs=9).double()
    dist2 = module.grid_distances(5, 7, torch.device('cpu'), torch.float64)
    exact = squared_distances(grid_positions(5, 7, dtype=torch.float64),
                              grid_positions(3, 3, dtype=torch.float64))
    assert dist2.dtype == torch.float64
    assert torch.equal(dist2, exact)
