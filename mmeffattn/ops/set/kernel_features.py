"""Nystrom feature map of the Gaussian kernel on the unit sphere (OTKE / CKN).

For unit vectors ``u, w``: ``kappa(u . w) = exp((u . w - 1) / sigma^2)`` equals
``exp(-|u - w|^2 / (2 sigma^2))``. With anchors ``Z`` (a x d, unit rows), the
Nystrom map ``psi(x) = kappa(Z x_hat) kappa(Z Z^T)^(-1/2)`` (x_hat = x/|x|)
gives ``psi(x) . psi(y) ~= kappa(x_hat . y_hat)``, exact on the anchors'
span.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def gaussian_sphere_kernel(u: torch.Tensor, w: torch.Tensor,
                           sigma: float) -> torch.Tensor:
    """(..., n, d), (..., a, d) unit vectors -> (..., n, a) kernel values."""
    inv = 1.0 / sigma**2
    return (u @ (w.transpose(-1, -2) * inv)).sub_(inv).exp_()


def inverse_sqrt_psd(mat: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """(..., a, a) symmetric PSD -> ``(mat + eps I)^(-1/2)`` (fp32 or fp64)."""
    work = torch.promote_types(mat.dtype, torch.float32)
    eye = torch.eye(mat.shape[-1], dtype=work, device=mat.device)
    evals, evecs = torch.linalg.eigh(mat.to(work) + eps * eye)
    inv = evals.clamp(min=eps).rsqrt()
    return (evecs * inv[..., None, :]) @ evecs.transpose(-1, -2)


def nystrom_basis(anchors: torch.Tensor, sigma: float = 0.5,
                  eps: float = 1e-3) -> Tuple[torch.Tensor, torch.Tensor]:
    """What the Nystrom map needs of its anchors, computed once per step.

    Args:
        anchors: (h, a, d) anchors (any scale).

    Returns:
        ``(z, k_inv_sqrt)``: (h, a, d) unit anchors and the (h, a, a)
        ``(kappa(Z Z^T) + eps I)^(-1/2)``, in at least fp32.
    """
    work = torch.promote_types(anchors.dtype, torch.float32)
    z = F.normalize(anchors.to(work), dim=-1)
    return z, inverse_sqrt_psd(gaussian_sphere_kernel(z, z, sigma), eps)


def nystrom_features(x: torch.Tensor, anchors: torch.Tensor,
                     sigma: float = 0.5, eps: float = 1e-3,
                     basis: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
                     ) -> torch.Tensor:
    """Nystrom Gaussian features of the directions of ``x``.

    Args:
        x: (..., h, n, d) inputs (heads in dim -3).
        anchors: (h, a, d) anchors (normalised here).
        sigma: kernel bandwidth on the sphere.
        basis: :func:`nystrom_basis` of ``anchors``, if already computed
            (the two calls of a layer share it; eval mode caches it).

    Returns:
        (..., h, n, a) features in at least fp32.
    """
    z, k_inv_sqrt = basis if basis is not None else nystrom_basis(
        anchors, sigma, eps)
    work = torch.promote_types(x.dtype, z.dtype)
    u = F.normalize(x.to(work), dim=-1)
    return gaussian_sphere_kernel(u, z.to(work), sigma) @ k_inv_sqrt.to(work)
