"""
vit_reference.py - an independent PyTorch ViT written from DESIGN §2 and §4,
used by crosscheck.py to check vitrain's logits (make test-torch).

Nothing here is translated from vitrain's C sources: the model follows the
DESIGN text (timm VisionTransformer semantics) and every positional encoding
of DESIGN §4 is implemented from its description there. The model is rebuilt
from the resolved INI config that vitrain stores in model.safetensors'
__metadata__, and evaluated in float64 so that the differences measured are
vitrain's (float32) errors, not ours.
"""
import configparser
import math

import torch
import torch.nn.functional as F

ENCODINGS = ("none", "absolute", "rope_axial", "rope_mixed", "spherical",
             "comrope_ap", "comrope_ld", "liere")


# ---- config ----------------------------------------------------------------

def parse_config(text):
    """The resolved INI text -> {section: {key: str}}."""
    cp = configparser.ConfigParser(interpolation=None, comment_prefixes=("#", ";"),
                                   inline_comment_prefixes=None, strict=False)
    cp.optionxform = str
    cp.read_string(text)
    return {s: dict(cp.items(s)) for s in cp.sections()}


def _get(cfg, section, key, default=None):
    v = cfg.get(section, {}).get(key)
    if v is None:
        return default
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] == '"':
        v = v[1:-1]
    return v


def _bool(v):
    return str(v).strip().lower() in ("true", "1", "yes", "on")


def _floats(v):
    return [float(t) for t in str(v).replace(" ", "").split(",") if t]


class Config:
    """The values of the resolved config the model needs (DESIGN §5)."""

    PRESETS = {"tiny": (192, 12, 3, 768), "small": (384, 12, 6, 1536),
               "base": (768, 12, 12, 3072)}

    def __init__(self, text):
        c = parse_config(text)
        self.raw = c
        self.img_size = int(_get(c, "data", "img_size"))
        self.channels = int(_get(c, "data", "channels"))
        self.mean = _floats(_get(c, "data", "mean", "0.5"))
        self.std = _floats(_get(c, "data", "std", "0.5"))
        if len(self.mean) == 1:
            self.mean = self.mean * self.channels
        if len(self.std) == 1:
            self.std = self.std * self.channels
        self.crop_pct = float(_get(c, "data", "crop_pct", "1.0"))
        preset = _get(c, "model", "preset", "") or ""
        if preset:
            self.dim, self.depth, self.heads, self.mlp_dim = self.PRESETS[preset]
        else:
            self.dim = int(_get(c, "model", "dim"))
            self.depth = int(_get(c, "model", "depth"))
            self.heads = int(_get(c, "model", "heads"))
            self.mlp_dim = int(_get(c, "model", "mlp_dim"))
        self.patch_size = int(_get(c, "model", "patch_size"))
        self.num_classes = int(_get(c, "model", "num_classes", "0"))
        self.pool = _get(c, "model", "pool", "token")
        self.layer_scale = float(_get(c, "model", "layer_scale", "0"))
        self.pe_type = _get(c, "pe", "type", "absolute")
        self.theta = float(_get(c, "pe", "theta", "0"))
        self.block_size = int(_get(c, "pe", "block_size", "8"))
        self.learned = _bool(_get(c, "pe", "learned", "false"))
        self.share_layers = _bool(_get(c, "pe", "share_layers", "false"))
        self.share_heads = _bool(_get(c, "pe", "share_heads", "false"))
        self.head_dim = self.dim // self.heads


# ---- positions ---------------------------------------------------------------

def grid_rc(g_h, g_w, dtype):
    """Integer (row, col) of every patch token, row-major (DESIGN §2)."""
    r = torch.arange(g_h, dtype=dtype).repeat_interleave(g_w)
    c = torch.arange(g_w, dtype=dtype).repeat(g_h)
    return r, c


# ---- rotations -------------------------------------------------------------
# Every rotary encoding yields, for each layer, a callable rot(x) acting on
# x (B, H, N, Dh) as x_n <- R(p_n) x_n (DESIGN §4).

def rotate_pairs(x, angle):
    """Interleaved pairs (2j, 2j+1) rotated by angle (H, N, Dh/2) (DESIGN §4)."""
    a = x[..., 0::2]
    b = x[..., 1::2]
    c, s = torch.cos(angle), torch.sin(angle)
    out = torch.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


def rotate_blocks(x, R):
    """Blocks of consecutive channels [j b, (j+1) b) rotated by R (H, N, nb, b, b);
    channels after the last whole block are left alone (DESIGN §4)."""
    nb, b = R.shape[-3], R.shape[-1]
    used = nb * b
    xb = x[..., :used].reshape(*x.shape[:-1], nb, b)
    yb = torch.einsum("hnjab,zhnjb->zhnja", R, xb)
    return torch.cat([yb.reshape(*x.shape[:-1], used), x[..., used:]], dim=-1)


def skew(U):
    return U - U.transpose(-1, -2)


class PositionalEncoding:
    """DESIGN §4: built from the config, the encoding's tensors and the grids."""

    def __init__(self, cfg, sd, g, g0, dtype):
        self.cfg, self.sd, self.g, self.g0, self.dtype = cfg, sd, g, g0, dtype
        self.type = cfg.pe_type
        if self.type not in ENCODINGS:
            raise ValueError("unknown pe.type %r" % self.type)
        self.N = 1 + g * g
        H, Dh = cfg.heads, cfg.head_dim
        self.rot = [None] * cfg.depth
        t = self.type
        if t == "rope_axial":
            self._rope_axial(H, Dh)
        elif t == "rope_mixed":
            self._rope_mixed(H, Dh)
        elif t == "spherical":
            self._spherical(H, Dh)
        elif t in ("comrope_ap", "comrope_ld"):
            self._comrope(H, Dh, t == "comrope_ld")
        elif t == "liere":
            self._liere(H, Dh)

    # §4.2: w_k = base^(-4k/Dh); pairs j < Dh/4 by w_j x (column), others w_(j-Dh/4) y (row).
    def _rope_axial(self, H, Dh):
        if Dh % 4:
            raise ValueError("rope_axial needs Dh % 4 == 0")
        base = self.cfg.theta if self.cfg.theta > 0 else 100.0
        q = Dh // 4
        w = base ** (-4.0 * torch.arange(q, dtype=self.dtype) / Dh)
        row, col = grid_rc(self.g, self.g, self.dtype)
        ang = torch.zeros(self.N, Dh // 2, dtype=self.dtype)  # CLS: 0 (not rotated)
        ang[1:, :q] = col[:, None] * w[None, :]
        ang[1:, q:] = row[:, None] * w[None, :]
        ang = ang.expand(H, -1, -1)
        for l in range(self.cfg.depth):
            self.rot[l] = lambda x, a=ang: rotate_pairs(x, a)

    # §4.3: angle of pair j, head h, layer l = fx[l,h,j] x + fy[l,h,j] y.
    def _rope_mixed(self, H, Dh):
        f = self.sd["freqs"].to(self.dtype)  # (2, depth, H*Dh/2)
        assert tuple(f.shape) == (2, self.cfg.depth, H * Dh // 2), f.shape
        f = f.reshape(2, self.cfg.depth, H, Dh // 2)
        row, col = grid_rc(self.g, self.g, self.dtype)
        for l in range(self.cfg.depth):
            ang = torch.zeros(H, self.N, Dh // 2, dtype=self.dtype)
            ang[:, 1:, :] = (f[0, l][:, None, :] * col[None, :, None]
                             + f[1, l][:, None, :] * row[None, :, None])
            self.rot[l] = lambda x, a=ang: rotate_pairs(x, a)

    # §4.4: triplets rotated by Yaw(w x) Roll(w y), w_d = 100^(-d/T),
    # positions linspace(-pi g/g0, pi g/g0, g) per axis; CLS not rotated.
    def _spherical(self, H, Dh):
        T = Dh // 3
        dt = self.dtype
        lim = math.pi * self.g / self.g0
        axis = torch.linspace(-lim, lim, self.g, dtype=dt)
        row_i, col_i = grid_rc(self.g, self.g, torch.int64)
        xs, ys = axis[col_i], axis[row_i]  # x: column, y: row
        if self.cfg.learned:
            fr = self.sd["freqs"].to(dt)  # (2, depth, H, T)
            assert tuple(fr.shape) == (2, self.cfg.depth, H, T), fr.shape
        else:
            base = self.cfg.theta if self.cfg.theta > 0 else 100.0
            w = base ** (-torch.arange(T, dtype=dt) / T)
            fr = w.expand(2, self.cfg.depth, H, T)
        for l in range(self.cfg.depth):
            a = fr[0, l][:, None, :] * xs[None, :, None]  # (H, Np, T) yaw angle
            b = fr[1, l][:, None, :] * ys[None, :, None]  # roll angle
            yaw = torch.zeros(H, self.N - 1, T, 3, 3, dtype=dt)
            yaw[..., 0, 0] = torch.cos(a)
            yaw[..., 0, 1] = -torch.sin(a)
            yaw[..., 1, 0] = torch.sin(a)
            yaw[..., 1, 1] = torch.cos(a)
            yaw[..., 2, 2] = 1
            roll = torch.zeros(H, self.N - 1, T, 3, 3, dtype=dt)
            roll[..., 0, 0] = 1
            roll[..., 1, 1] = torch.cos(b)
            roll[..., 1, 2] = -torch.sin(b)
            roll[..., 2, 1] = torch.sin(b)
            roll[..., 2, 2] = torch.cos(b)
            R = torch.eye(3, dtype=dt).expand(H, self.N, T, 3, 3).clone()
            R[:, 1:] = yaw @ roll
            self.rot[l] = lambda x, R=R: rotate_blocks(x, R)

    # §4.5: positions (row, col) = ((i+.5)/g, (j+.5)/g), CLS at (.5, .5);
    # S = F - F^T; AP: block j uses p_(j mod 2); LD: (m0j p_row + m1j p_col).
    def _comrope(self, H, Dh, ld):
        b = self.cfg.block_size
        nb = Dh // b
        dt = self.dtype
        row, col = grid_rc(self.g, self.g, dt)
        pr = torch.cat([torch.tensor([0.5], dtype=dt), (row + 0.5) / self.g])
        pc = torch.cat([torch.tensor([0.5], dtype=dt), (col + 0.5) / self.g])
        p = torch.stack([pr, pc])  # (2, N)
        for l in range(self.cfg.depth):
            Fm = self.sd["blocks.%d.attn.freqs" % l].to(dt)
            assert tuple(Fm.shape) == (H, 1, nb, b, b), Fm.shape
            S = skew(Fm[:, 0])  # (H, nb, b, b)
            if ld:
                m = self.sd["blocks.%d.attn.multiplier" % l].to(dt)
                assert tuple(m.shape) == (1, 2, nb, 1, 1), m.shape
                m = m.reshape(2, nb)
                coef = m[0][None, :] * p[0][:, None] + m[1][None, :] * p[1][:, None]  # (N, nb)
            else:
                coef = torch.stack([p[j % 2] for j in range(nb)], dim=1)  # (N, nb)
            G = coef[None, :, :, None, None] * S[:, None]  # (H, N, nb, b, b)
            R = torch.linalg.matrix_exp(G)
            self.rot[l] = lambda x, R=R: rotate_blocks(x, R)

    # §4.6: positions linspace(0, g/g0, g) per axis (= linspace(0, 1, g0) at
    # training), CLS identity; A = U - U^T, U = triu(raw, 1);
    # G = p_row A[0,l,k] + p_col A[1,l,k], k = h (Dh/b) + j.
    def _liere(self, H, Dh):
        b = self.cfg.block_size
        nb = Dh // b
        dt = self.dtype
        raw = self.sd["position_encoder.generator_raw_params"].to(dt)
        L_raw, K_raw = raw.shape[1], raw.shape[2]
        assert raw.shape[0] == 2 and raw.shape[3] == b and raw.shape[4] == b, raw.shape
        assert L_raw in (1, self.cfg.depth) and K_raw in (nb, nb * H), raw.shape
        if self.cfg.share_layers:
            assert L_raw == 1 or self.cfg.depth == 1, raw.shape
        if self.cfg.share_heads:
            assert K_raw == nb or H == 1, raw.shape
        A = skew(torch.triu(raw, diagonal=1))
        axis = torch.linspace(0.0, self.g / self.g0, self.g, dtype=dt)
        row_i, col_i = grid_rc(self.g, self.g, torch.int64)
        pr, pc = axis[row_i], axis[col_i]
        for l in range(self.cfg.depth):
            li = l if L_raw > 1 else 0
            Ak = A[:, li]  # (2, K_raw, b, b)
            if K_raw == nb:
                Ak = Ak.repeat(1, H, 1, 1)
            Ak = Ak.reshape(2, H, nb, b, b)
            G = (pr[None, :, None, None, None] * Ak[0][:, None]
                 + pc[None, :, None, None, None] * Ak[1][:, None])  # (H, Np, nb, b, b)
            R = torch.eye(b, dtype=dt).expand(H, self.N, nb, b, b).clone()
            R[:, 1:] = torch.linalg.matrix_exp(G)
            self.rot[l] = lambda x, R=R: rotate_blocks(x, R)


# ---- the model -------------------------------------------------------------

def resample_abs_pos_embed(pos_embed, g, g0):
    """timm's resample_abs_pos_embed with one prefix (CLS) token (DESIGN §4.1)."""
    if g == g0:
        return pos_embed
    D = pos_embed.shape[-1]
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    grid = grid.reshape(1, g0, g0, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(g, g), mode="bicubic", antialias=True,
                         align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, g * g, D)
    return torch.cat([cls, grid], dim=1)


class ViTReference:
    """DESIGN §2, evaluated with plain tensor operations at img_size."""

    def __init__(self, cfg, state_dict, img_size, dtype=torch.float64):
        self.cfg, self.dtype = cfg, dtype
        self.sd = {k: v.to(dtype) for k, v in state_dict.items()}
        P = cfg.patch_size
        if img_size % P:
            raise ValueError("patch size %d does not divide %d" % (P, img_size))
        self.g0 = cfg.img_size // P
        self.g = img_size // P
        self.pe = PositionalEncoding(cfg, self.sd, self.g, self.g0, dtype)

    def _ln(self, x, prefix):
        return F.layer_norm(x, (x.shape[-1],), self.sd[prefix + ".weight"],
                            self.sd[prefix + ".bias"], eps=1e-6)

    def _lin(self, x, prefix):
        return F.linear(x, self.sd[prefix + ".weight"], self.sd[prefix + ".bias"])

    def forward(self, images):
        """images: (B, C, S, S) normalised floats -> logits (B, K)."""
        cfg, sd = self.cfg, self.sd
        x = images.to(self.dtype)
        B = x.shape[0]
        D, H, Dh = cfg.dim, cfg.heads, cfg.head_dim
        x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"],
                     stride=cfg.patch_size)  # (B, D, g, g)
        x = x.flatten(2).transpose(1, 2)  # row-major patches
        x = torch.cat([sd["cls_token"].expand(B, 1, D), x], dim=1)
        if self.pe.type == "absolute":
            x = x + resample_abs_pos_embed(sd["pos_embed"], self.g, self.g0)
        N = x.shape[1]
        for l in range(cfg.depth):
            p = "blocks.%d." % l
            h = self._ln(x, p + "norm1")
            qkv = self._lin(h, p + "attn.qkv").reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, N, Dh)
            rot = self.pe.rot[l]
            if rot is not None:
                q, k = rot(q), rot(k)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(Dh), dim=-1)
            a = (att @ v).transpose(1, 2).reshape(B, N, D)
            a = self._lin(a, p + "attn.proj")
            if p + "ls1.gamma" in sd:
                a = a * sd[p + "ls1.gamma"]
            x = x + a
            h = self._ln(x, p + "norm2")
            h = F.gelu(self._lin(h, p + "mlp.fc1"))  # exact (erf)
            h = self._lin(h, p + "mlp.fc2")
            if p + "ls2.gamma" in sd:
                h = h * sd[p + "ls2.gamma"]
            x = x + h
        x = self._ln(x, "norm")
        pooled = x[:, 0] if cfg.pool == "token" else x[:, 1:].mean(dim=1)
        return self._lin(pooled, "head")
