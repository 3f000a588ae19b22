"""An image-classification dataset in node-shared memory: one copy per node, like the noise table.

A dataset directory holds the four standard IDX files (each gzipped or not, ``.gz`` optional):
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``. Images are ``(n, rows, cols)`` uint8 (grey levels 0..255), labels
``(n,)`` uint8 class indices.

``Dataset`` keeps, per split, ``images`` as ``(n, rows, cols)`` uint8 (4x smaller than float32:
60,000 MNIST images are 47 MB) and ``labels`` as ``(n,)`` int32, both in one node-shared window per
array under MPI (filled by the node's first rank, then ``node_barrier``). The networks scale pixels
on the fly, ``x = pixel * float32(1/255)`` in [0, 1] (``gather``).

Loading is collective and fails together: every rank reads the headers (cheap) and checks them, the
filling rank reads the data, and one OR-reduction tells every rank whether any fill failed, so a
truncated file on one node ends every rank with a ``DataError`` instead of a hang.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from ..errors import DataError
from . import idx

SPLITS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def find_file(directory: Path, stem: str) -> Path:
    """``directory/stem`` or ``directory/stem.gz``, whichever exists (DataError naming both if neither)."""
    for name in (stem, stem + ".gz"):
        p = directory / name
        if p.is_file():
            return p
    if not directory.is_dir():
        raise DataError(f"{directory}: no such dataset directory; run `make data` or set the dataset path "
                        f"to a directory holding the four MNIST-format IDX files")
    raise DataError(f"{directory / stem}[.gz]: no such file; the dataset directory needs {', '.join(SPLITS['train'] + SPLITS['test'])} "
                    f"(each optionally .gz); run `make data` or fix the dataset path")


@dataclass
class Split:
    images: np.ndarray      # (n, rows, cols) uint8, node-shared under MPI
    labels: np.ndarray      # (n,) int32
    files: tuple[str, str]

    @property
    def n(self) -> int:
        return self.labels.shape[0]


class Dataset:
    """The train and test splits of one dataset directory, shared by the ranks of a node."""

    def __init__(self, directory, comm=None, num_classes: int = 10):
        self.directory = Path(directory)
        self.num_classes = num_classes
        plan = {s: self._check_headers(s) for s in SPLITS}
        self.image_shape = plan["train"][2][1:]
        if plan["test"][2][1:] != self.image_shape:
            raise DataError(f"{plan['test'][0]}: images of {plan['test'][2][1:]} pixels, but the training images "
                            f"are {self.image_shape}; both splits must come from one dataset")
        self.splits, error = {}, ""
        for s, (img_path, lab_path, shape) in plan.items():
            n = shape[0]
            if comm is None:
                images, labels, fill = np.empty(shape, np.uint8), np.empty(n, np.int32), True
            else:
                flat, fill = comm.node_shared_array(int(np.prod(shape)), np.uint8)
                images = flat.reshape(shape)
                labels, _ = comm.node_shared_array(n, np.int32)
            if fill and not error:
                error = self._fill(img_path, lab_path, images, labels)
            self.splits[s] = Split(images, labels, (str(img_path), str(lab_path)))
        if comm is not None:
            failed = comm.any_flags(1 if error else 0)
            comm.node_barrier()
            if failed and not error:
                error = "loading the dataset failed on another rank (its message names the file); fix the file there"
        if error:
            raise DataError(error)

    def _check_headers(self, split: str):
        img_path, lab_path = (find_file(self.directory, stem) for stem in SPLITS[split])
        img_dtype, img_shape = idx.read_header(img_path, 3)
        lab_dtype, lab_shape = idx.read_header(lab_path, 1)
        for p, dt in ((img_path, img_dtype), (lab_path, lab_dtype)):
            if dt != np.uint8:
                raise DataError(f"{p}: IDX data of type {dt}, expected uint8 (MNIST format); convert the file")
        if img_shape[0] != lab_shape[0]:
            raise DataError(f"{img_path}: {img_shape[0]} images but {lab_path.name} has {lab_shape[0]} labels; "
                            f"use the images and labels of one split")
        if img_shape[0] == 0:
            raise DataError(f"{img_path}: the file holds no images; {idx.FIX}")
        return img_path, lab_path, img_shape

    def _fill(self, img_path, lab_path, images, labels) -> str:
        try:
            images[...] = idx.read_idx(img_path, 3)
            lab = idx.read_idx(lab_path, 1)
        except DataError as ex:
            return str(ex)
        if lab.max() >= self.num_classes:
            return (f"{lab_path}: label {int(lab.max())} is not a class index below {self.num_classes}; "
                    f"use a {self.num_classes}-class dataset")
        labels[:] = lab
        return ""

    def __getitem__(self, split: str) -> Split:
        return self.splits[split]

    def spec(self) -> dict:
        return {"directory": str(self.directory), "image_shape": list(self.image_shape),
                "num_classes": self.num_classes,
                **{f"n_{s}": self.splits[s].n for s in SPLITS},
                "files": {s: list(self.splits[s].files) for s in SPLITS},
                "pixels": "uint8 / 255 -> float32 in [0, 1]"}


@numba.njit(cache=True, nogil=True)
def gather(images, labels, index, x_out, y_out):
    """x_out[i] = images[index[i]] / 255 (float32 or float64, (B, rows, cols, 1) NHWC), y_out[i] = labels[index[i]]."""
    B = index.shape[0]
    R, C = images.shape[1], images.shape[2]
    scale = x_out.dtype.type(1.0) / x_out.dtype.type(255.0)
    for i in range(B):
        k = index[i]
        y_out[i] = labels[k]
        for r in range(R):
            for c in range(C):
                x_out[i, r, c, 0] = images[k, r, c] * scale
