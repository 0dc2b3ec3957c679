"""Loss terms of CACH and of the DUCH and DJSRH baselines: pure functions of tensors.

Notation (see docs/method.md): ``h`` are tanh hash outputs ``[B, bits]``; ``x`` frozen features.
All functions return a scalar tensor unless stated otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_matrix(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise cosine similarities ``[len(a), len(b)]`` (``b = a`` when omitted)."""
    a = F.normalize(a, dim=-1)
    b = a if b is None else F.normalize(b, dim=-1)
    return a @ b.t()


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = 0.3) -> torch.Tensor:
    """SimCLR's NT-Xent over ``2B`` samples; row ``i`` of ``a`` and row ``i`` of ``b`` are positives.

    Every other sample of either view in the batch is a negative, as in DUCH.
    """
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]), dim=-1)
    logits = z @ z.t() / tau
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def quantization_loss(h: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from the tanh outputs to their signs, ``mean((h - sign(h))^2)``."""
    return (h - torch.sign(h).detach()).pow(2).mean()


def bit_balance_loss(h: torch.Tensor) -> torch.Tensor:
    """Each bit should be +1 on half the batch: ``mean_j (mean_i h_ij)^2``."""
    return h.mean(dim=0).pow(2).mean()


def centered_cosine(x: torch.Tensor) -> torch.Tensor:
    """Cosine similarity after removing the batch mean: spreads raw CNN features over [-1, 1]."""
    return cosine_matrix(x - x.mean(dim=0, keepdim=True))


def knn_affinity(s: torch.Tensor, k: int) -> torch.Tensor:
    """Neighbourhood scale: shared-neighbour overlap of the k-NN sets under ``s``, in [0, 1].

    ``A[i, j] = |kNN(i) ∩ kNN(j)| / k`` with each sample counted among its own neighbours.
    """
    k = max(1, min(k, s.shape[0]))
    idx = s.topk(k, dim=1).indices
    member = torch.zeros_like(s).scatter_(1, idx, 1.0)
    return member @ member.t() / k


def multiscale_similarity(
    x_img: torch.Tensor,
    x_txt: torch.Tensor,
    beta: float = 0.5,
    eta: float = 0.3,
    gamma: float = 0.2,
    k: int = 10,
) -> torch.Tensor:
    """CACH target similarity ``S`` in [-1, 1] fused from three scales (no labels).

    1. first order: ``S1 = beta * cos_c(x_img) + (1 - beta) * cos_c(x_txt)`` (batch-centred cosines);
    2. second order: ``S2 = cos(S1 rows)``, the similarity of two samples' similarity profiles;
    3. neighbourhood: ``N = 2 * knn_affinity(S1, k) - 1``.

    ``S = (1 - eta - gamma) * S1 + eta * S2 + gamma * N``.
    """
    with torch.no_grad():
        s1 = beta * centered_cosine(x_img) + (1.0 - beta) * centered_cosine(x_txt)
        s2 = cosine_matrix(s1)
        nb = 2.0 * knn_affinity(s1, k) - 1.0
        s = (1.0 - eta - gamma) * s1 + eta * s2 + gamma * nb
    return s.clamp(-1.0, 1.0)


def similarity_matching_loss(
    target: torch.Tensor, h_a: torch.Tensor, h_b: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    """``mean((cos(h_a, h_b) - clamp(scale * S, -1, 1))^2)``: codes' cosines follow the target."""
    return (cosine_matrix(h_a, h_b) - (scale * target).clamp(-1.0, 1.0)).pow(2).mean()


def feature_preservation_loss(
    x: torch.Tensor,
    h: torch.Tensor,
    h2: torch.Tensor | None = None,
    scale: float = 1.0,
    neighbour: float = 0.0,
    k: int = 10,
) -> torch.Tensor:
    """Intra-image structure preservation over *all* pairs of the batch (no labels).

    The codes' cosine matrix ``cos(h, h)`` matches ``clamp(scale * cos_c(x), -1, 1)``, the
    batch-centred cosine matrix of the frozen features ``x``; with ``h2`` (codes of another view of
    the same items) the cross-view matrix ``cos(h, h2)`` is matched to the same target too. With
    ``neighbour > 0`` the target mixes in the shared-neighbour overlap ``2 knn_affinity - 1``.
    """
    with torch.no_grad():
        target = (scale * centered_cosine(x)).clamp(-1.0, 1.0)
        if neighbour > 0:
            nb = 2.0 * knn_affinity(target, k) - 1.0
            target = ((1.0 - neighbour) * target + neighbour * nb).clamp(-1.0, 1.0)
    loss = (cosine_matrix(h) - target).pow(2).mean()
    if h2 is not None:
        loss = 0.5 * (loss + (cosine_matrix(h, h2) - target).pow(2).mean())
    return loss


def cross_autoencoder_loss(
    rec_img: torch.Tensor,
    x_img: torch.Tensor,
    rec_txt: torch.Tensor,
    x_txt: torch.Tensor,
    reh_img: torch.Tensor,
    h_img: torch.Tensor,
    reh_txt: torch.Tensor,
    h_txt: torch.Tensor,
    cycle_weight: float = 1.0,
) -> torch.Tensor:
    """Cross-autoencoder: reconstruction plus re-encoded hash consistency.

    ``rec_img`` are image features decoded from the *text* hash, ``rec_txt`` text features decoded
    from the *image* hash; both are compared with the L2-normalised originals by ``1 - cos``.
    ``reh_img`` / ``reh_txt`` are the hash outputs of the reconstructions re-encoded through the
    image / text head; they must match the original hashes ``h_img`` / ``h_txt`` (targets detached).
    """
    rec = (1 - F.cosine_similarity(rec_img, x_img, dim=-1)).mean() + (
        1 - F.cosine_similarity(rec_txt, x_txt, dim=-1)
    ).mean()
    cyc = (1 - F.cosine_similarity(reh_img, h_img.detach(), dim=-1)).mean() + (
        1 - F.cosine_similarity(reh_txt, h_txt.detach(), dim=-1)
    ).mean()
    return rec + cycle_weight * cyc


def djsrh_similarity(
    x_img: torch.Tensor, x_txt: torch.Tensor, beta: float = 0.6, eta: float = 0.4, mu: float = 1.5
) -> torch.Tensor:
    """DJSRH's joint-modal similarity matrix (Su et al. 2019), as in its public code.

    ``S_m = 2 cos(x_m) - 1``; ``S~ = beta S_I + (1 - beta) S_T``;
    ``S = mu * ((1 - eta) S~ + eta S~ S~^T / B)``.
    """
    with torch.no_grad():
        s_i = 2 * cosine_matrix(x_img) - 1
        s_t = 2 * cosine_matrix(x_txt) - 1
        s = beta * s_i + (1 - beta) * s_t
        s = (1 - eta) * s + eta * (s @ s.t()) / s.shape[0]
    return mu * s


def djsrh_loss(
    s_joint: torch.Tensor,
    h_img: torch.Tensor,
    h_txt: torch.Tensor,
    lambda_ii: float = 0.1,
    lambda_tt: float = 0.1,
) -> torch.Tensor:
    """DJSRH reconstruction of the joint similarity matrix by the codes' cosine similarities."""
    return (
        F.mse_loss(cosine_matrix(h_img, h_txt), s_joint)
        + lambda_ii * F.mse_loss(cosine_matrix(h_img), s_joint)
        + lambda_tt * F.mse_loss(cosine_matrix(h_txt), s_joint)
    )


def neighbour_targets(s: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    """Soft contrastive targets from a similarity matrix: ``(1 - alpha) I + alpha kNN(s) / k``.

    Each row sums to 1: the paired item keeps weight ``1 - alpha``; the ``k`` most similar other
    items of the batch share ``alpha``. Rows of ``s`` are the anchors.
    """
    n = s.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=s.device)
    k = max(0, min(k, n - 1))
    if k == 0 or alpha <= 0:
        return eye.float()
    idx = s.masked_fill(eye, float("-inf")).topk(k, dim=1).indices
    nb = torch.zeros_like(s).scatter_(1, idx, 1.0 / k)
    return (1.0 - alpha) * eye.float() + alpha * nb


def soft_contrastive(
    a: torch.Tensor, b: torch.Tensor, target: torch.Tensor, tau: float = 0.3
) -> torch.Tensor:
    """Cross-entropy between soft targets and ``softmax(cos(a, b) / tau)``, both directions.

    With ``target = I`` this is the symmetric InfoNCE (CLIP) loss; neighbour mass in ``target``
    turns semantically similar items of the batch from negatives into (weak) positives.
    """
    logits = cosine_matrix(a, b) / tau
    t_rows = target / target.sum(dim=1, keepdim=True).clamp_min(1e-12)
    tt = target.t()
    t_cols = tt / tt.sum(dim=1, keepdim=True).clamp_min(1e-12)
    loss_ab = -(t_rows * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    loss_ba = -(t_cols * F.log_softmax(logits.t(), dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_ab + loss_ba)
