"""
make_images.py ROOT SIZE [--channels C] [--classes K] [--train N] [--val N] [--seed S]

Writes a tiny ImageNet-style folder ROOT/{train,val}/class_<k>/<i>.png of
SIZE x SIZE images (random texture plus a class-dependent bright square, so
a few training steps move the parameters). Used by scripts/test_torch.sh.
"""
import argparse
import os

import numpy as np

from pngio import write_png


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("size", type=int)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--train", type=int, default=4)
    ap.add_argument("--val", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    for split, count in (("train", a.train), ("val", a.val)):
        for k in range(a.classes):
            d = os.path.join(a.root, split, "class_%d" % k)
            os.makedirs(d, exist_ok=True)
            for i in range(count):
                img = rng.integers(0, 256, size=(a.size, a.size, a.channels), dtype=np.uint8)
                s = max(1, a.size // 4)
                y0 = int(rng.integers(0, a.size - s + 1))
                x0 = (k * a.size // a.classes) % (a.size - s + 1)
                img[y0:y0 + s, x0:x0 + s] = 250
                write_png(os.path.join(d, "%d.png" % i), img if a.channels > 1 else img[:, :, 0])


if __name__ == "__main__":
    main()
