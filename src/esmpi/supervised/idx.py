"""IDX files (the MNIST / Fashion-MNIST format), gzipped or not: strict reading and writing.

Format (big-endian): two zero bytes, a type code, the number of dimensions ``n``, then ``n`` uint32
sizes, then the data in C order. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64. A file is gzipped iff it starts with the gzip magic ``1f 8b``, whatever
its name.

Every failure raises ``DataError`` with one line naming the file and the fix: missing file, bad
magic, wrong number of dimensions, truncated data or trailing bytes, a corrupt gzip stream.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
         0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
          np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}
GZIP_MAGIC = b"\x1f\x8b"
FIX = "re-run `make data`, or point the config at a complete copy of the file"


def _open(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: no such file; {FIX}")
    with open(path, "rb") as f:
        gz = f.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _read(f, n: int, path: Path, what: str) -> bytes:
    try:
        b = f.read(n)
    except (EOFError, OSError, zlib.error) as ex:  # truncated or corrupt gzip stream
        raise DataError(f"{path}: corrupt or truncated gzip data while reading {what} ({ex}); {FIX}") from None
    if len(b) != n:
        raise DataError(f"{path}: truncated: {what} needs {n} bytes, the file holds {len(b)}; {FIX}")
    return b


def read_header(path, ndim: int | None = None) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) from the header only (cheap, also for a gzipped file)."""
    path = Path(path)
    with _open(path) as f:
        return _header(f, path, ndim)


def _header(f, path: Path, ndim: int | None):
    magic = _read(f, 4, path, "the 4-byte magic number")
    if magic[0] != 0 or magic[1] != 0 or magic[2] not in TYPES:
        raise DataError(f"{path}: not an IDX file (magic number {magic.hex()}, expected 0000TTNN with type TT in "
                        f"08,09,0b,0c,0d,0e); {FIX}")
    n = magic[3]
    if ndim is not None and n != ndim:
        raise DataError(f"{path}: IDX file of {n} dimension(s), expected {ndim} "
                        f"({'images: count, rows, cols' if ndim == 3 else 'labels: count'}); check the file name")
    shape = struct.unpack(f">{n}I", _read(f, 4 * n, path, f"the {n} dimension sizes"))
    return np.dtype(TYPES[magic[2]]), tuple(int(s) for s in shape)


def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """The whole array, native byte order; exactly as many data bytes as the header says."""
    path = Path(path)
    with _open(path) as f:
        dtype, shape = _header(f, path, ndim)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not isinstance(f, gzip.GzipFile):   # raw: check the size first (a corrupt header must not allocate GBs)
            have = path.stat().st_size - 4 - 4 * len(shape)
            if have != nbytes:
                what = "truncated" if have < nbytes else "trailing bytes"
                raise DataError(f"{path}: {what}: the header's shape {shape} needs {nbytes} data bytes, the file "
                                f"holds {have}; {FIX}")
        data = _read(f, nbytes, path, f"the data of shape {shape}")
        if _read_tail(f, path):
            raise DataError(f"{path}: trailing bytes after the {shape} data: not a valid IDX file; {FIX}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_tail(f, path: Path) -> bool:
    try:
        return len(f.read(1)) > 0
    except (EOFError, OSError, zlib.error) as ex:
        raise DataError(f"{path}: corrupt gzip data after the array ({ex}); {FIX}") from None


def write_idx(path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzipped iff the name ends in .gz), atomically."""
    path = Path(path)
    a = np.asarray(array)
    code = _CODES.get(a.dtype.newbyteorder("=") if a.dtype.byteorder not in "=|" else a.dtype)
    if code is None:
        raise ValueError(f"IDX cannot store dtype {a.dtype}")
    payload = (bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
               + np.ascontiguousarray(a, dtype=np.dtype(TYPES[code])).tobytes())
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".gz":
        # mtime=0: the same array gives the same bytes
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as g:
            g.write(payload)
    else:
        tmp.write_bytes(payload)
    os.replace(tmp, path)
