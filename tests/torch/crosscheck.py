"""
crosscheck.py --model RUN/model.safetensors --logits LOGITS.csv --img-size N

Rebuilds the model of a vitrain run from its model.safetensors (the config
in __metadata__, DESIGN §5) as the PyTorch reference of vit_reference.py,
evaluates the images listed in LOGITS.csv (written by `vitrain eval
--dump-logits`: path,label,logit_0,...) and compares its logits with
vitrain's: max |diff| / max |logit| must be at most --tol (1e-4).

The images must already be N x N: the eval transform (resize to N/crop_pct,
center crop N) is then the identity, and only the normalisation
(x/255 - mean)/std per channel remains, which is done here.

Prints one line `RESULT <encoding> <img_size> <max_rel_diff> PASS|FAIL`;
exit status 0 on PASS, 1 on FAIL, 2 on an error.
"""
import argparse
import csv
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vit_reference import Config, ViTReference  # noqa: E402


def read_safetensors(path):
    """-> ({name: torch.Tensor float32}, metadata dict). Our own reader: 8-byte
    little-endian header length, JSON header, then the raw little-endian data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError("%s: tensor %s has dtype %s, expected F32" % (path, name, info["dtype"]))
        start, end = info["data_offsets"]
        arr = np.frombuffer(blob, dtype="<f4", count=(end - start) // 4, offset=base + start)
        tensors[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return tensors, meta


def load_model_file(path):
    try:
        from safetensors import safe_open  # optional
    except ImportError:
        return read_safetensors(path)
    tensors = {}
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta


def load_image(path, channels):
    try:
        from PIL import Image
        with Image.open(path) as im:
            mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
            if im.mode != mode:
                raise ValueError("%s: image mode %s, the model wants %s" % (path, im.mode, mode))
            arr = np.asarray(im, dtype=np.uint8)
    except ImportError:
        from pngio import read_png
        arr = read_png(path)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] != channels:
        raise ValueError("%s: %d channels, the model wants %d" % (path, arr.shape[2], channels))
    return arr


def read_logits(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    if head[:3] != ["path", "label", "logit_0"]:
        raise ValueError("%s: unexpected header %s" % (path, head[:3]))
    paths = [r[0] for r in rows[1:]]
    labels = [int(r[1]) for r in rows[1:]]
    logits = np.array([[float(v) for v in r[2:]] for r in rows[1:]], dtype=np.float64)
    return paths, labels, logits


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="model.safetensors of the run")
    ap.add_argument("--logits", required=True, help="CSV of vitrain eval --dump-logits")
    ap.add_argument("--img-size", type=int, required=True)
    ap.add_argument("--data", default=None, help="base folder for relative image paths")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    tensors, meta = load_model_file(a.model)
    if meta.get("format") != "vitrain" or "config" not in meta:
        raise SystemExit("%s: __metadata__ lacks format=vitrain / config" % a.model)
    cfg = Config(meta["config"])
    paths, labels, want = read_logits(a.logits)
    if not paths:
        raise SystemExit("%s: no images" % a.logits)
    imgs = []
    for p in paths:
        if not os.path.isabs(p) and not os.path.exists(p) and a.data:
            p = os.path.join(a.data, p)
        arr = load_image(p, cfg.channels)
        if arr.shape[0] != a.img_size or arr.shape[1] != a.img_size:
            raise SystemExit("%s is %dx%d: crosscheck needs images of the eval size %d"
                             % (p, arr.shape[1], arr.shape[0], a.img_size))
        imgs.append(arr)
    x = torch.from_numpy(np.stack(imgs).astype(np.float64)).permute(0, 3, 1, 2)  # (B,C,S,S)
    mean = torch.tensor(cfg.mean[:cfg.channels], dtype=torch.float64)[None, :, None, None]
    std = torch.tensor(cfg.std[:cfg.channels], dtype=torch.float64)[None, :, None, None]
    x = (x / 255.0 - mean) / std

    model = ViTReference(cfg, tensors, a.img_size)
    with torch.no_grad():
        got = model.forward(x).numpy()
    if got.shape != want.shape:
        raise SystemExit("logit shapes differ: reference %s, vitrain %s" % (got.shape, want.shape))
    scale = float(np.abs(got).max())
    diff = float(np.abs(got - want).max())
    rel = diff / scale if scale > 0 else diff
    ok = rel <= a.tol and np.isfinite(rel)
    print("RESULT %s %d %.3e %s  (max|diff| %.3e, max|logit| %.3e, %d images)"
          % (cfg.pe_type, a.img_size, rel, "PASS" if ok else "FAIL", diff, scale, len(paths)))
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit as e:
        if isinstance(e.code, str):
            print("crosscheck: error: %s" % e.code, file=sys.stderr)
            sys.exit(2)
        raise
    except Exception as e:  # noqa: BLE001
        print("crosscheck: error: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(2)
