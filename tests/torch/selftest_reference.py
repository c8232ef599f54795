"""
selftest_reference.py - checks the PyTorch reference itself, before it is
used to judge vitrain (run by scripts/test_torch.sh):

- every encoding builds and runs on random parameters, at the training grid
  and a larger one, with finite logits;
- every rotation is orthogonal (|R x| = |x| per token and block);
- the CLS token is left alone where DESIGN §4 says so, and rotated at
  (0.5, 0.5) for ComRoPE;
- ComRoPE (AP and LD) is relative: q_m^T R_m^T R_n k_n depends only on
  p_n - p_m (commuting generators), while LieRE and spherical are not;
- rope_axial equals the closed form of DESIGN §4.2 on a hand-picked token;
- the absolute encoding at the training grid is unchanged by resampling,
  and resampling a constant grid gives the constant.
Exit status 0 when all hold.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_reference as vr  # noqa: E402

DT = torch.float64
FAILS = []


def check(cond, what):
    print("%s  %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        FAILS.append(what)


def make_cfg(pe, extra=""):
    text = """
[data]
img_size = 28
channels = 3
mean = 0.4,0.5,0.6
std = 0.2,0.3,0.4
[model]
dim = 96
depth = 2
heads = 2
mlp_dim = 64
patch_size = 7
num_classes = 5
pool = token
layer_scale = 0.3
[pe]
type = %s
%s
""" % (pe, extra)
    return vr.Config(text)


def random_params(cfg, gen):
    D, L, H, Dh, b = cfg.dim, cfg.depth, cfg.heads, cfg.head_dim, cfg.block_size
    g0 = cfg.img_size // cfg.patch_size
    r = lambda *s: torch.randn(*s, generator=gen, dtype=DT) * 0.3  # noqa: E731
    sd = {"patch_embed.proj.weight": r(D, cfg.channels, cfg.patch_size, cfg.patch_size),
          "patch_embed.proj.bias": r(D), "cls_token": r(1, 1, D),
          "norm.weight": 1 + r(D), "norm.bias": r(D), "head.weight": r(cfg.num_classes, D),
          "head.bias": r(cfg.num_classes)}
    for l in range(L):
        p = "blocks.%d." % l
        for n, shp in (("norm1.weight", (D,)), ("norm1.bias", (D,)), ("attn.qkv.weight", (3 * D, D)),
                       ("attn.qkv.bias", (3 * D,)), ("attn.proj.weight", (D, D)),
                       ("attn.proj.bias", (D,)), ("ls1.gamma", (D,)), ("norm2.weight", (D,)),
                       ("norm2.bias", (D,)), ("mlp.fc1.weight", (cfg.mlp_dim, D)),
                       ("mlp.fc1.bias", (cfg.mlp_dim,)), ("mlp.fc2.weight", (D, cfg.mlp_dim)),
                       ("mlp.fc2.bias", (D,)), ("ls2.gamma", (D,))):
            sd[p + n] = r(*shp)
        if cfg.pe_type in ("comrope_ap", "comrope_ld"):
            sd[p + "attn.freqs"] = r(H, 1, Dh // b, b, b) * 3
            if cfg.pe_type == "comrope_ld":
                sd[p + "attn.multiplier"] = torch.randn(1, 2, Dh // b, 1, 1, generator=gen, dtype=DT)
    if cfg.pe_type == "absolute":
        sd["pos_embed"] = r(1, 1 + g0 * g0, D)
    if cfg.pe_type == "rope_mixed":
        sd["freqs"] = r(2, L, H * Dh // 2)
    if cfg.pe_type == "spherical" and cfg.learned:
        sd["freqs"] = r(2, L, H, Dh // 3)
    if cfg.pe_type == "liere":
        Ls = 1 if cfg.share_layers else L
        Ks = Dh // b if cfg.share_heads else (Dh // b) * H
        sd["position_encoder.generator_raw_params"] = (
            torch.rand(2, Ls, Ks, b, b, generator=gen, dtype=DT) * 2 * math.pi)
    return sd


def main():
    gen = torch.Generator().manual_seed(0)
    variants = [("none", ""), ("absolute", ""), ("rope_axial", ""), ("rope_mixed", ""),
                ("spherical", ""), ("spherical", "learned = true"), ("comrope_ap", ""),
                ("comrope_ld", ""), ("liere", ""), ("liere", "share_layers = true"),
                ("liere", "share_heads = true"), ("liere", "block_size = 48")]
    for pe, extra in variants:
        name = pe + (" (%s)" % extra if extra else "")
        cfg = make_cfg(pe, extra)
        sd = random_params(cfg, gen)
        for size in (28, 42):
            m = vr.ViTReference(cfg, sd, size)
            x = torch.randn(2, 3, size, size, generator=gen, dtype=DT)
            y = m.forward(x)
            check(y.shape == (2, 5) and bool(torch.isfinite(y).all()), "%s @%d runs" % (name, size))
            rot = m.pe.rot[1]
            if rot is None:
                continue
            v = torch.randn(1, cfg.heads, m.pe.N, cfg.head_dim, generator=gen, dtype=DT)
            w = rot(v)
            err = (w.norm(dim=-1) - v.norm(dim=-1)).abs().max().item()
            check(err < 1e-12, "%s @%d norm-preserving (%.1e)" % (name, size, err))
            cls_moved = (w[:, :, 0] - v[:, :, 0]).abs().max().item()
            if pe.startswith("comrope"):
                check(cls_moved > 1e-6, "%s @%d rotates CLS" % (name, size))
            else:
                check(cls_moved == 0.0, "%s @%d leaves CLS alone" % (name, size))
            if size == 28:
                # relative property: <R_m q, R_n k> for two pairs with equal offset
                g = m.g
                t = lambda r, c: 1 + r * g + c  # noqa: E731
                q = torch.randn(cfg.head_dim, generator=gen, dtype=DT)
                k = torch.randn(cfg.head_dim, generator=gen, dtype=DT)
                rep = lambda u: u.expand(1, cfg.heads, m.pe.N, cfg.head_dim)  # noqa: E731
                Rq, Rk = rot(rep(q)), rot(rep(k))
                d1 = (Rq[0, 0, t(0, 0)] * Rk[0, 0, t(1, 2)]).sum().item()
                d2 = (Rq[0, 0, t(2, 1)] * Rk[0, 0, t(3, 3)]).sum().item()
                relative = abs(d1 - d2) < 1e-9 * (1 + abs(d1))
                want_rel = pe in ("rope_axial", "rope_mixed", "comrope_ap", "comrope_ld")
                check(relative == want_rel, "%s relative: %s (%.3g vs %.3g)"
                      % (name, relative, d1, d2))
    # rope_axial closed form (DESIGN §4.2), token at row 2, col 3, head 0
    cfg = make_cfg("rope_axial")
    m = vr.ViTReference(cfg, random_params(cfg, gen), 28)
    v = torch.randn(1, cfg.heads, m.pe.N, cfg.head_dim, generator=gen, dtype=DT)
    w = m.pe.rot[0](v)
    n, Dh = 1 + 2 * m.g + 3, cfg.head_dim
    worst = 0.0
    for j in range(Dh // 2):
        kk = j % (Dh // 4)
        ang = 100.0 ** (-4.0 * kk / Dh) * (3 if j < Dh // 4 else 2)
        a, b = v[0, 0, n, 2 * j].item(), v[0, 0, n, 2 * j + 1].item()
        worst = max(worst, abs(w[0, 0, n, 2 * j].item() - (a * math.cos(ang) - b * math.sin(ang))),
                    abs(w[0, 0, n, 2 * j + 1].item() - (a * math.sin(ang) + b * math.cos(ang))))
    check(worst < 1e-12, "rope_axial closed form (%.1e)" % worst)
    # absolute resampling
    pe = torch.randn(1, 17, 8, generator=gen, dtype=DT)
    check(torch.equal(vr.resample_abs_pos_embed(pe, 4, 4), pe), "pos_embed unchanged at g0")
    const = torch.full((1, 17, 8), 0.7, dtype=DT)
    up = vr.resample_abs_pos_embed(const, 6, 4)
    check(up.shape == (1, 37, 8) and (up - 0.7).abs().max().item() < 1e-12,
          "pos_embed: a constant grid stays constant")
    print("selftest: %s" % ("all passed" if not FAILS else "%d FAILED" % len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
