"""A small generated image-classification dataset in the MNIST file format, for fast tests and demos.

``write_synthetic(directory, ...)`` writes the four IDX files (gzipped or not) of ``n_train`` and
``n_test`` images of ``size x size`` pixels in ``num_classes`` classes: class c is a bright bar at
a class-specific position and orientation plus uniform noise, so a small network can learn it in a
few hundred steps, yet it is not linearly trivial at high noise. Deterministic from ``seed``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import SPLITS
from .idx import write_idx


def make_images(n: int, size: int, num_classes: int, rng: np.random.Generator, noise: float = 0.35):
    """((n, size, size) uint8, (n,) uint8): labels cycle through the classes, then are shuffled."""
    labels = rng.permutation(np.arange(n) % num_classes).astype(np.uint8)
    images = rng.uniform(0.0, noise, size=(n, size, size))
    for i, c in enumerate(labels):
        pos = 1 + (int(c) // 2) % (size - 2)
        if c % 2 == 0:
            images[i, pos, :] += 1.0 - noise
        else:
            images[i, :, pos] += 1.0 - noise
    return np.rint(np.clip(images, 0, 1) * 255).astype(np.uint8), labels


def write_synthetic(directory, n_train: int = 60, n_test: int = 30, size: int = 8, num_classes: int = 10,
                    seed: int = 0, gz: bool = True) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = make_images(n, size, num_classes, rng)
        img_stem, lab_stem = SPLITS[split]
        write_idx(directory / (img_stem + suffix), images)
        write_idx(directory / (lab_stem + suffix), labels)
    return directory
