"""The CPU backend of :func:`~.set_attention.set_attention_nystrom`: one
kernel (``_ext/csrc/set_nystrom_cpu.cpp``). Each (batch, head) group's
features, Gibbs kernels, Sinkhorn iterations, gather and scatter run back to
back on per-thread buffers, forward and backward. Nothing N x m outlives a
group; backward recomputes the kernels. Same maths as
:class:`~.transport.SeTNystromTransportFunction`, which stays the path for
other devices, dtypes and tracing (tests: the two agree, values and every
gradient)."""
import torch

from .._ext import eager_kernel_runs, require_extension


def nystrom_kernel_runs(qkv: torch.Tensor) -> bool:
    """Whether :class:`SeTNystromTransportCPUFunction` runs for this input:
    eager, CPU, fp32 / fp64 / bf16 (computed in fp32), kernels built."""
    return eager_kernel_runs(qkv, (torch.float32, torch.float64,
                                   torch.bfloat16))


class SeTNystromTransportCPUFunction(torch.autograd.Function):
    """``(qkv (B, N, 3, h, d), z (h, a, d), weight (h, a, m), pos_log
    (h or 1, N, m) or None, pos_scale (h,) or None, sigma, num_iters, mask
    (B, N) or None) -> (B, N, h, d)``, the log kernels' positional term
    being ``pos_scale[h] * pos_log``; keeps qkv, the (B, h, m, d) gathered
    references and the Sinkhorn iterates (N and m values each)."""

    @staticmethod
    def forward(ctx, qkv, z, weight, pos_log, pos_scale, sigma, num_iters,
                mask):
        ctx.dtypes = [None if t is None else t.dtype
                      for t in (qkv, z, weight, pos_log, pos_scale)]
        work = torch.promote_types(qkv.dtype, torch.float32)
        qkv_w, z_w, w_w, pos_w = (None if t is None else t.to(work)
                                  for t in (qkv, z, weight, pos_log))
        with torch.autocast('cpu', enabled=False):
            res = require_extension('SeT attention').set_nystrom_forward(
                qkv_w, z_w, w_w, pos_w, pos_scale, mask, sigma, num_iters)
        out, gather, trace = res[0], res[1], res[2:]
        ctx.sigma, ctx.mask = sigma, mask
        ctx.save_for_backward(qkv_w, z_w, w_w, pos_w, pos_scale, gather,
                              *trace)
        return out.to(qkv.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        qkv, z, weight, pos_log, pos_scale, gather, *trace = \
            ctx.saved_tensors
        need = ctx.needs_input_grad
        with torch.autocast('cpu', enabled=False):
            grads = require_extension('SeT attention').set_nystrom_backward(
                grad_out.to(qkv.dtype), qkv, z, weight, pos_log, pos_scale,
                ctx.mask, ctx.sigma, gather, trace, need[3], need[4])
        grads = [g.to(dt) if g is not None and g.numel() else None
                 for g, dt in zip(grads, ctx.dtypes)]
        return (*grads, None, None, None)
