"""
torch_peer.py - the PyTorch side of `make bench`: the same model, batch and
optimizer as bench/vit_bench.c, timed the same way.

    python3 bench/torch_peer.py MODEL.safetensors BATCH STEPS THREADS

MODEL is the initial model vit_bench exports (its config travels in the
safetensors metadata). The network is the independent PyTorch ViT of
tests/torch/vit_reference.py (timm's VisionTransformer semantics, every
encoding of DESIGN §4 written from the text, eager PyTorch 1.13 as Debian
ships it), here in float32 with autograd: cross-entropy with label
smoothing 0.1 and torch.optim.AdamW, the rotations rebuilt from the
current parameters at every step, as a training run must. Prints one line
of key=value pairs like vit_bench.
"""
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "torch"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from crosscheck import read_safetensors  # noqa: E402
from vit_reference import Config, ViTReference  # noqa: E402


def quadrant_batch(batch, channels, size):
    """Images with a bright square in one quadrant, like synthetic_quadrant."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(batch, channels, size, size, generator=g) * 0.2
    labels = torch.randint(0, 4, (batch,), generator=g)
    half = size // 2
    for i in range(batch):
        r, c = divmod(int(labels[i]), 2)
        images[i, :, r * half:r * half + half // 2, c * half:c * half + half // 2] += 0.8
    return images, labels


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    path, batch, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    tensors, meta = read_safetensors(path)
    cfg = Config(meta["config"])
    params = {k: v.clone().requires_grad_(True) for k, v in tensors.items()}
    decay = [p for k, p in params.items() if p.ndim >= 2 and "pos_embed" not in k
             and "cls_token" not in k]
    no_decay = [p for p in params.values() if all(p is not q for q in decay)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4)
    images, labels = quadrant_batch(batch, cfg.channels, cfg.img_size)

    def train_step():
        t0 = time.perf_counter()
        model = ViTReference(cfg, params, cfg.img_size, dtype=torch.float32)
        loss = F.cross_entropy(model.forward(images), labels, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    def infer_step():
        t0 = time.perf_counter()
        with torch.no_grad():
            ViTReference(cfg, params, cfg.img_size, dtype=torch.float32).forward(images)
        return time.perf_counter() - t0

    for _ in range(2):
        train_step()
    train = sorted(train_step() for _ in range(steps))
    infer_step()
    infer = sorted(infer_step() for _ in range(steps))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("train_img_s=%.2f infer_img_s=%.2f rss_mib=%.1f"
          % (batch / train[steps // 2], batch / infer[steps // 2], rss_mib))


if __name__ == "__main__":
    main()
