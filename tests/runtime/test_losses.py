"""Loss terms on hand-computed cases, and gradients reaching both heads."""

from __future__ import annotations

import math

import pytest
import torch

from model_runtime.hashing import losses as L
from model_runtime.hashing.model import CrossDecoders, HashHeads
from model_runtime.hashing.train import TrainConfig, batch_loss


def test_nt_xent_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    # each row: positive logit 1/tau, two negatives with logit 0
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
    assert L.nt_xent(a, a.clone(), tau).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_prefers_aligned_pairs():
    torch.manual_seed(0)
    a = torch.randn(8, 16)
    assert L.nt_xent(a, a + 0.01 * torch.randn(8, 16)) < L.nt_xent(a, torch.randn(8, 16))


def test_quantization_and_balance_hand_computed():
    h = torch.tensor([[0.5, -1.0], [-1.0, 1.0]])
    # (0.5-1)^2 = 0.25, others 0 -> mean over 4 entries
    assert L.quantization_loss(h).item() == pytest.approx(0.25 / 4)
    # bit means: (-0.25, 0) -> mean of squares = 0.0625 / 2
    assert L.bit_balance_loss(h).item() == pytest.approx(0.03125)
    assert L.bit_balance_loss(torch.tensor([[1.0, -1.0], [-1.0, 1.0]])).item() == 0.0


def test_knn_affinity_hand_computed():
    s = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.1], [0.0, 0.1, 1.0]])
    a = L.knn_affinity(s, k=2)
    # kNN(0) = {0,1}, kNN(1) = {1,0}, kNN(2) = {2,1}
    expected = torch.tensor([[1.0, 1.0, 0.5], [1.0, 1.0, 0.5], [0.5, 0.5, 1.0]])
    assert torch.allclose(a, expected)


def test_multiscale_similarity_properties():
    torch.manual_seed(0)
    x_img, x_txt = torch.rand(12, 20), torch.randn(12, 8)
    s = L.multiscale_similarity(x_img, x_txt, k=3)
    assert s.shape == (12, 12)
    assert torch.allclose(torch.diagonal(s), torch.ones(12), atol=1e-5)
    assert s.min() >= -1 and s.max() <= 1
    # a duplicated item is maximally similar to its copy
    x_img[1], x_txt[1] = x_img[0], x_txt[0]
    s = L.multiscale_similarity(x_img, x_txt, k=3)
    assert s[0, 1].item() == pytest.approx(1.0, abs=1e-5)
    assert not s.requires_grad


def test_similarity_matching_zero_when_codes_follow_target():
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    target = torch.eye(2)
    assert L.similarity_matching_loss(target, h, h).item() == pytest.approx(0.0, abs=1e-7)
    # codes all equal but target says orthogonal: off-diagonal error 1 each -> mean 0.5
    same = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert L.similarity_matching_loss(target, same, same).item() == pytest.approx(0.5)


def test_cross_autoencoder_loss_zero_on_perfect_cycle():
    x_i, x_t, h_i, h_t = torch.randn(4, 6), torch.randn(4, 3), torch.randn(4, 8), torch.randn(4, 8)
    zero = L.cross_autoencoder_loss(2 * x_i, x_i, x_t, x_t, h_i, h_i, h_t, h_t)
    assert zero.item() == pytest.approx(0.0, abs=1e-6)
    # opposite reconstructions: 1 - cos = 2 for each term
    worst = L.cross_autoencoder_loss(-x_i, x_i, -x_t, x_t, -h_i, h_i, -h_t, h_t)
    assert worst.item() == pytest.approx(8.0, abs=1e-5)


def test_djsrh_similarity_hand_computed():
    x = torch.ones(3, 4)
    s = L.djsrh_similarity(x, x, beta=0.6, eta=0.4, mu=1.5)
    # all cosines 1 -> S_m = 1, S~ = 1, S~S~^T/B = 1 -> S = mu
    assert torch.allclose(s, torch.full((3, 3), 1.5))
    h = torch.tensor([[1.0, 1.0]] * 3)
    # code cosines are 1, target 1.5: squared error 0.25 in all three terms
    assert L.djsrh_loss(s, h, h).item() == pytest.approx(0.25 * 1.2)


@pytest.mark.parametrize("method", ["cach", "duch", "djsrh"])
def test_gradients_reach_both_heads(method):
    torch.manual_seed(0)
    heads = HashHeads(image_dim=24, text_dim=12, bits=16, hidden=32)
    dec = CrossDecoders(16, 24, 12, 32) if method == "cach" else None
    x_i, x_t = torch.rand(10, 24), torch.nn.functional.normalize(torch.randn(10, 12), dim=-1)
    batch = (x_i, x_i + 0.01, x_t, x_t.flip(0))
    loss = batch_loss(method, TrainConfig(sim_k=3), heads, dec, batch, x_t)
    loss.backward()
    for name in ("image_head", "text_head"):
        grads = [p.grad for p in getattr(heads, name).parameters()]
        assert all(g is not None for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    if dec is not None:
        assert all(p.grad is not None for p in dec.parameters())


def test_ablation_switches_terms_off():
    torch.manual_seed(0)
    heads = HashHeads(image_dim=24, text_dim=12, bits=16, hidden=32).eval()
    x_i, x_t = torch.rand(10, 24), torch.nn.functional.normalize(torch.randn(10, 12), dim=-1)
    batch = (x_i, x_i, x_t, x_t)

    def loss(**kw):
        return batch_loss("cach", TrainConfig(sim_k=3, **kw), heads, None, batch, x_t).item()

    # similarity off == no matching term and identity contrastive targets
    assert loss(disable=("similarity",)) == pytest.approx(loss(w_sim=0.0, soft_alpha=0.0))
    assert loss(disable=("similarity",)) != pytest.approx(loss())
    assert loss(disable=("quantization",)) == pytest.approx(loss(w_quant=0.0, w_balance=0.0))
    assert loss(disable=("contrastive",)) == pytest.approx(loss(w_inter=0.0, w_intra=0.0))


def test_soft_contrastive_reduces_to_infonce():
    torch.manual_seed(0)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    logits = L.cosine_matrix(a, b) / 0.3
    target = torch.arange(6)
    expected = 0.5 * (
        torch.nn.functional.cross_entropy(logits, target)
        + torch.nn.functional.cross_entropy(logits.t(), target)
    )
    assert L.soft_contrastive(a, b, torch.eye(6), 0.3).item() == pytest.approx(expected.item())


def test_neighbour_targets_hand_computed():
    s = torch.tensor([[1.0, 0.9, 0.1], [0.9, 1.0, 0.2], [0.1, 0.2, 1.0]])
    t = L.neighbour_targets(s, k=1, alpha=0.4)
    expected = torch.tensor([[0.6, 0.4, 0.0], [0.4, 0.6, 0.0], [0.0, 0.4, 0.6]])
    assert torch.allclose(t, expected)
    assert torch.allclose(t.sum(dim=1), torch.ones(3))


def test_feature_preservation_hand_case_and_gradient():
    import torch as _t

    x = _t.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    # centred cosine of x is x's cosine (mean 0); codes equal to x match it exactly
    assert L.feature_preservation_loss(x, x.clone()).item() < 1e-10
    h = _t.ones(4, 2, requires_grad=True)  # all codes equal: cos 1 everywhere
    target = L.cosine_matrix(x)
    want = (1 - target).pow(2).mean().item()
    loss = L.feature_preservation_loss(x, h)
    assert abs(loss.item() - want) < 1e-6
    h2 = _t.randn(4, 2, requires_grad=True)
    L.feature_preservation_loss(x, h2, h2 * 1.0).backward()
    assert h2.grad is not None and h2.grad.abs().sum() > 0


def test_fold_beta_keeps_outputs():
    import torch as _t

    from model_runtime.hashing.model import HashHeads

    heads = HashHeads(8, 6, 16, hidden=8).eval()
    x, t = _t.randn(5, 8), _t.randn(5, 6)
    heads.beta = 3.0
    a, b = heads.encode_image(x), heads.encode_text(t)
    heads.fold_beta()
    assert heads.beta == 1.0
    assert _t.allclose(heads.encode_image(x), a, atol=1e-6)
    assert _t.allclose(heads.encode_text(t), b, atol=1e-6)
