"""Train hash heads on frozen features without labels: CACH, DUCH or DJSRH in one harness."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from model_runtime.errors import ConfigError, DataError
from model_runtime.hashing import losses as L
from model_runtime.hashing.model import CrossDecoders, HashHeads
from model_runtime.hashing.projection import fit_projection

LOG = logging.getLogger(__name__)

METHODS = ("cach", "duch", "djsrh")
#: CACH loss groups that an ablation can switch off (see docs/method.md)
CACH_TERMS = ("contrastive", "similarity", "autoencoder", "quantization")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults are the ones used for docs/results.md."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 512
    dropout: float = 0.1
    tau: float = 0.3  # NT-Xent temperature
    feature_noise: float = 0.0  # std of Gaussian noise on L2-normalised features (extra views)
    # CACH / DUCH weights
    w_inter: float = 1.0
    w_intra: float = 0.5
    w_sim: float = 0.5
    w_ae: float = 0.2
    w_quant: float = 0.1
    w_balance: float = 0.1
    # CACH image-structure preservation: cos(h_I, h_I) matches scale * cos_c(x_I) over all pairs
    # (x_I the frozen features, or their stored projection with preserve_proj)
    w_preserve: float = 0.0
    preserve_scale: float = 1.0
    preserve_proj: bool = False
    preserve_neighbour: float = 0.0  # share of the shared-kNN overlap in the target
    preserve_k: int = 0  # its neighbourhood size (0: sim_k)
    preserve_batch: int = 0  # > 0: preservation on its own random batch of images and views
    # text-structure preservation over a caption bank without images (e.g. RSICD + RSITMD):
    # cos(h_T, h_T) matches cos_c(x_T) on text_batch bank sentences per step
    w_text_preserve: float = 0.0
    text_batch: int = 256
    #: anchor the bank to the batch's own captions: cos(h_T(bank), h_T(captions)) follows the
    #: centred cosine between their features (instead of bank-bank pairs)
    text_anchor: bool = False
    # stored projection: the image head reads a frozen PCA of the L2-normalised image features,
    # fitted on the training images and views (0: no projection, the head reads the features)
    proj_dim: int = 0
    proj_whiten: float = 0.5
    # late quantization: w_quant ramps linearly from w_quant to w_quant * quant_final over the last
    # quant_late share of the steps; tanh(beta z) with beta annealed from 1 to beta_final
    quant_final: float = 1.0
    quant_late: float = 0.3
    beta_final: float = 1.0
    # CACH multiscale similarity
    sim_beta: float = 0.3
    sim_eta: float = 0.3
    sim_gamma: float = 0.2
    sim_k: int = 10
    sim_scale: float = 1.0
    # CACH contrastive: neighbours under the multiscale similarity become soft positives
    soft_k: int = 4
    soft_alpha: float = 0.4
    # DJSRH
    djsrh_beta: float = 0.6
    djsrh_eta: float = 0.4
    djsrh_mu: float = 1.5
    disable: tuple[str, ...] = ()  # CACH terms switched off (ablations)
    # The heads are small: one thread is fastest, and on a shared 2-core machine more threads
    # spin against each other (measured 20x slower with 2 threads under load).
    threads: int = 1

    def __post_init__(self) -> None:
        bad = set(self.disable) - set(CACH_TERMS)
        if bad:
            raise ConfigError(f"unknown CACH loss terms {sorted(bad)}; known: {CACH_TERMS}")


def _check_inputs(img: np.ndarray, txt: np.ndarray, img_aug: np.ndarray | None) -> np.ndarray:
    if img.ndim != 2:
        raise DataError(f"image features must be [N, D], got shape {img.shape}")
    if txt.ndim == 2:
        txt = txt[:, None, :]
    if txt.ndim != 3 or len(txt) != len(img):
        raise DataError(f"text features must be [N, C, D] with N={len(img)}, got {txt.shape}")
    if img_aug is not None and (img_aug.ndim != 3 or len(img_aug) != len(img)):
        raise DataError(f"augmented image features must be [N, V, D], got {img_aug.shape}")
    if len(img) < 4:
        raise DataError(f"need at least 4 training pairs, got {len(img)}")
    return txt


def train_heads(
    method: str,
    img_feats: np.ndarray,
    txt_feats: np.ndarray,
    bits: int,
    seed: int = 0,
    img_aug: np.ndarray | None = None,
    config: TrainConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    text_bank: np.ndarray | None = None,
) -> HashHeads:
    """Train heads without labels and return them in eval mode (CPU).

    ``img_feats [N, Di]``; ``txt_feats [N, C, Dt]`` (C captions per image, or ``[N, Dt]``);
    ``img_aug [N, V, Di]`` optional features of augmented views (intra-modal positives);
    ``text_bank [M, Dt]`` optional sentences without images (text-structure preservation).
    ``progress(epoch, epochs, loss)`` is called after each epoch. Training time in seconds and the
    final loss are stored in ``heads.train_info``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown method '{method}'; choose one of {', '.join(METHODS)}")
    cfg = config or TrainConfig()
    img_np = np.asarray(img_feats, dtype=np.float32)
    txt_np = _check_inputs(img_np, np.asarray(txt_feats, dtype=np.float32), img_aug)
    if cfg.w_text_preserve > 0 and (text_bank is None or len(text_bank) < 2):
        raise DataError("w_text_preserve > 0 needs a caption bank (text_bank [M, Dt])")
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        data = _tensors(img_np, txt_np, img_aug, text_bank if cfg.w_text_preserve > 0 else None)
        return _train(method, cfg, data, bits, seed, progress)
    finally:
        torch.set_num_threads(prev_threads)


def _tensors(img_np, txt_np, img_aug, bank) -> dict[str, torch.Tensor | None]:
    """L2-normalised training tensors: images, captions, views, caption means, bank."""

    def norm(a):
        if a is None:
            return None
        return F.normalize(torch.from_numpy(np.asarray(a, np.float32)), dim=-1)

    txt = norm(txt_np)
    return {
        "img": norm(img_np),
        "txt": txt,
        "aug": norm(img_aug),
        "txt_mean": F.normalize(txt.mean(dim=1), dim=-1),
        "bank": norm(bank),
    }


def _build(method: str, cfg: TrainConfig, data: dict, bits: int):
    """Heads (with their fitted projection), the training-only decoders and the parameters."""
    img, txt, aug = data["img"], data["txt"], data["aug"]
    heads = HashHeads(img.shape[1], txt.shape[2], bits, cfg.hidden, cfg.dropout, cfg.proj_dim)
    if cfg.proj_dim > 0:
        views = img.numpy()[:, None]
        if aug is not None:
            views = np.concatenate([views, aug.numpy()], axis=1)
        mean, matrix = fit_projection(views, cfg.proj_dim, cfg.proj_whiten)
        heads.image_proj.mean.copy_(torch.from_numpy(mean))
        heads.image_proj.matrix.copy_(torch.from_numpy(matrix))
        heads.unfold_projection()  # trained in feature coordinates, folded back at the end
        heads.image_head[0] = torch.nn.Linear(img.shape[1], cfg.hidden)  # a feature head's init
    params = list(heads.parameters())  # the projection is a buffer: frozen
    dec = None
    if method == "cach" and "autoencoder" not in cfg.disable and cfg.w_ae > 0:
        dec = CrossDecoders(bits, img.shape[1], txt.shape[2], cfg.hidden)
        params += list(dec.parameters())
    return heads, dec, params


def _train(method, cfg, data, bits, seed, progress) -> HashHeads:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    heads, dec, params = _build(method, cfg, data, bits)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(data["img"])
    bs = min(cfg.batch_size, n)
    steps = n // bs  # drop the last partial batch: contrastive terms want full batches
    n_steps = max(1, cfg.epochs * steps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_steps)
    heads.train()
    last = math.nan
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(steps):
            idx = perm[s * bs : (s + 1) * bs]
            frac = (epoch * steps + s) / n_steps
            heads.beta = cfg.beta_final**frac  # geometric 1 -> beta_final
            batch = _views(idx, data["img"], data["txt"], data["aug"], gen, cfg.feature_noise)
            bank = _bank_batch(data["bank"], cfg.text_batch, gen)
            extra = _image_batch(data, cfg.preserve_batch, gen)
            loss = batch_loss(
                method, cfg, heads, dec, batch, data["txt_mean"][idx], frac, bank, extra
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        last = total / max(steps, 1)
        if progress is not None:
            progress(epoch + 1, cfg.epochs, last)
    return _finish(heads, cfg, method, bits, seed, time.perf_counter() - t0, last, n)


def _image_batch(data, size: int, gen) -> torch.Tensor | None:
    """``size`` random training images or views (for preservation on its own batch), or None."""
    if size <= 0:
        return None
    img, aug = data["img"], data["aug"]
    idx = torch.randint(0, len(img), (size,), generator=gen)
    if aug is None:
        return img[idx]
    view = torch.randint(0, aug.shape[1] + 1, (size,), generator=gen)
    return torch.where((view == 0)[:, None], img[idx], aug[idx, (view - 1).clamp_min(0)])


def _bank_batch(bank, size: int, gen) -> torch.Tensor | None:
    if bank is None:
        return None
    return bank[torch.randint(0, len(bank), (min(size, len(bank)),), generator=gen)]


def _finish(heads, cfg, method, bits, seed, seconds, last, n) -> HashHeads:
    heads.beta = cfg.beta_final
    heads.fold_beta()  # shipped heads compute tanh(z) with beta baked into the last layer
    heads.fold_projection()  # shipped heads read the projection directly
    heads.eval()
    heads.train_info = {  # type: ignore[attr-defined]
        "method": method,
        "bits": bits,
        "seed": seed,
        "seconds": seconds,
        "final_loss": last,
        "n_train": n,
    }
    LOG.info("trained %s %d bits seed %d in %.1fs", method, bits, seed, seconds)
    return heads


def _views(idx, img, txt, aug, gen, noise):
    """Two image views and two captions per item (a different caption where there are several)."""
    b, n_cap = len(idx), txt.shape[1]
    x_img = img[idx]
    if aug is not None:
        v = torch.randint(0, aug.shape[1], (b,), generator=gen)
        x_img2 = aug[idx, v]
    else:
        x_img2 = x_img
    c1 = torch.randint(0, n_cap, (b,), generator=gen)
    if n_cap > 1:
        c2 = (c1 + torch.randint(1, n_cap, (b,), generator=gen)) % n_cap
    else:
        c2 = c1
    x_txt, x_txt2 = txt[idx, c1], txt[idx, c2]
    if noise > 0 or aug is None:
        # feature-space views: Gaussian noise plus dropout where no augmented images exist
        sd = noise if noise > 0 else 0.02
        x_img2 = _jitter(x_img2, sd, gen, drop=0.1 if aug is None else 0.0)
        if n_cap == 1:
            x_txt2 = _jitter(x_txt2, sd, gen, drop=0.1)
    return x_img, x_img2, x_txt, x_txt2


def _jitter(x, sd, gen, drop):
    out = x + sd * torch.randn(x.shape, generator=gen)
    if drop > 0:
        out = out * (torch.rand(x.shape, generator=gen) > drop) / (1 - drop)
    return out


def _quant_weight(cfg: TrainConfig, frac: float) -> float:
    """``w_quant``, ramped linearly to ``w_quant * quant_final`` over the last ``quant_late``."""
    if cfg.quant_final == 1.0 or cfg.quant_late <= 0:
        return cfg.w_quant
    start = 1.0 - cfg.quant_late
    t = min(1.0, max(0.0, (frac - start) / cfg.quant_late))
    return cfg.w_quant * (1.0 + t * (cfg.quant_final - 1.0))


def _preservation(cfg, heads, x_img, h_i, h_i2, bank, x_txt, h_t, extra) -> torch.Tensor:
    """Image- and text-structure preservation terms (zero when their weights are 0)."""
    loss = h_i.new_zeros(())
    if cfg.w_preserve > 0:
        if extra is not None:  # its own, larger batch of images
            x_img, h_i, h_i2 = extra, heads.encode_image(extra), None
        ref = heads.project_image(x_img) if cfg.preserve_proj else x_img
        loss = loss + cfg.w_preserve * L.feature_preservation_loss(
            ref, h_i, h_i2, cfg.preserve_scale, cfg.preserve_neighbour, cfg.preserve_k or cfg.sim_k
        )
    if cfg.w_text_preserve > 0 and bank is not None:
        loss = loss + cfg.w_text_preserve * _text_preservation(cfg, heads, bank, x_txt, h_t)
    return loss


def _text_preservation(cfg, heads, bank, x_txt, h_t) -> torch.Tensor:
    h_b = heads.encode_text(bank)
    if not cfg.text_anchor:
        return L.feature_preservation_loss(bank, h_b, None, cfg.preserve_scale)
    with torch.no_grad():
        both = torch.cat([bank, x_txt])
        centred = both - both.mean(dim=0, keepdim=True)
        target = L.cosine_matrix(centred[: len(bank)], centred[len(bank) :])
    return (L.cosine_matrix(h_b, h_t) - target).pow(2).mean()


def batch_loss(
    method: str,
    cfg: TrainConfig,
    heads: HashHeads,
    dec: CrossDecoders | None,
    batch: tuple[torch.Tensor, ...],
    txt_mean: torch.Tensor,
    frac: float = 1.0,
    bank: torch.Tensor | None = None,
    extra: torch.Tensor | None = None,
) -> torch.Tensor:
    """The training loss of one batch: ``batch = (x_img, x_img2, x_txt, x_txt2)`` (normalised).

    ``frac`` in [0, 1] is the share of training done (for the late quantization ramp); ``bank``
    a batch of caption-bank sentences for the text-structure preservation term; ``extra`` a batch
    of images for the image-structure preservation term (default: the batch's own images).
    """
    x_img, x_img2, x_txt, x_txt2 = batch
    h_i, h_t = heads.encode_image(x_img), heads.encode_text(x_txt)
    if method == "djsrh":
        s = L.djsrh_similarity(x_img, x_txt, cfg.djsrh_beta, cfg.djsrh_eta, cfg.djsrh_mu)
        return L.djsrh_loss(s, h_i, h_t)
    h_i2, h_t2 = heads.encode_image(x_img2), heads.encode_text(x_txt2)
    off = cfg.disable if method == "cach" else ()
    loss = h_i.new_zeros(())
    if "quantization" not in off:
        q = L.quantization_loss(h_i) + L.quantization_loss(h_t)
        bal = L.bit_balance_loss(h_i) + L.bit_balance_loss(h_t)
        loss = loss + _quant_weight(cfg, frac) * q + cfg.w_balance * bal
    if method == "duch":
        loss = loss + cfg.w_inter * L.nt_xent(h_i, h_t, cfg.tau)
        return loss + cfg.w_intra * (L.nt_xent(h_i, h_i2, cfg.tau) + L.nt_xent(h_t, h_t2, cfg.tau))
    # CACH
    s = None
    if "similarity" not in off:
        s = L.multiscale_similarity(
            x_img, txt_mean, cfg.sim_beta, cfg.sim_eta, cfg.sim_gamma, cfg.sim_k
        )
        sim = (
            L.similarity_matching_loss(s, h_i, h_t, cfg.sim_scale)
            + L.similarity_matching_loss(s, h_i, h_i, cfg.sim_scale)
            + L.similarity_matching_loss(s, h_t, h_t, cfg.sim_scale)
        )
        loss = loss + cfg.w_sim * sim
    loss = loss + _preservation(cfg, heads, x_img, h_i, h_i2, bank, x_txt, h_t, extra)
    if "contrastive" not in off:
        loss = loss + _contrastive(cfg, s, h_i, h_i2, h_t, h_t2)
    if dec is not None:
        loss = loss + cfg.w_ae * _autoencoder(heads, dec, x_img, x_txt, h_i, h_t)
    return loss


def _contrastive(cfg: TrainConfig, s, h_i, h_i2, h_t, h_t2) -> torch.Tensor:
    """Inter- and intra-modal contrast; neighbours under the multiscale similarity ``s`` are soft
    positives (plain InfoNCE where ``s`` is None)."""
    if s is None:
        tgt = torch.eye(len(h_i), device=h_i.device)
    else:
        tgt = L.neighbour_targets(s, cfg.soft_k, cfg.soft_alpha)
    inter = L.soft_contrastive(h_i, h_t, tgt, cfg.tau)
    intra = L.soft_contrastive(h_i, h_i2, tgt, cfg.tau) + L.soft_contrastive(h_t, h_t2, tgt, cfg.tau)
    return cfg.w_inter * inter + cfg.w_intra * intra


def _autoencoder(heads: HashHeads, dec: CrossDecoders, x_img, x_txt, h_i, h_t) -> torch.Tensor:
    """The cross-modal autoencoder term: each modality's code rebuilds the other's features."""
    rec_img = dec.image_from_text(h_t)
    rec_txt = dec.text_from_image(h_i)
    reh_i, reh_t = heads.encode_image(rec_img), heads.encode_text(rec_txt)
    return L.cross_autoencoder_loss(rec_img, x_img, rec_txt, x_txt, reh_i, h_i, reh_t, h_t)
