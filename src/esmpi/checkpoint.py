"""The only h5py import: atomic save and validated load of ``ESState`` + history + config.

Layout (``LAYOUT_VERSION`` 1; documented in docs/checkpoint.md, readable with h5py alone):

    /                      attrs: format="esmpi-checkpoint", layout_version, esmpi_version,
                           git_commit, created_utc, world_size, config_json, versions_json,
                           num_params, obs_dim, policy_json
    /state                 attrs: generation, episodes_so_far, timesteps_so_far, cutoff
    /state/theta           (num_params,) float32
    /state/optimizer/m, v  (num_params,) float32; attrs: t
    /state/obs_stats/sum, sumsq   (obs_dim,) float64; attrs: count
    /history               compound table (generations,) with one float64 field per key of
                           ``metrics.HISTORY_KEYS``

Writes go to ``<name>.tmp-<pid>``, are flushed and fsynced, renamed over the target and the
directory is fsynced: a crash at any moment leaves the previous file intact; a failed write is an
``OutputError`` (exit 5). No pickle anywhere: attributes are numbers, strings or JSON strings. The
root attribute ``content_sha256`` covers every other attribute and dataset.

``load`` reads everything first (``_read``), then checks it against the tables of
``esmpi.checkpoint_schema`` (dtype, shape, finiteness, attribute types, sizes from ``policy_json``,
the content checksum) before building the state: one ``CheckpointError`` line for any damage.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np

from . import __version__, optim
from . import checkpoint_schema as schema
from .errors import CheckpointError, OutputError
from .es import ESState
from .obs_norm import ObsStats

FORMAT = "esmpi-checkpoint"
LAYOUT_VERSION = 1


def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except Exception:
        return ""


def versions() -> dict:
    v = {"python": platform.python_version(), "esmpi": __version__}
    for pkg in ("numpy", "numba", "mujoco", "gymnasium", "mpi4py", "mpich", "h5py"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    v["hdf5"] = h5py.version.hdf5_version
    return v


_PROVENANCE: dict | None = None


def provenance(mpi_library: str = "") -> dict:
    """Computed once per process (git is asked once)."""
    global _PROVENANCE
    if _PROVENANCE is None:
        _PROVENANCE = {"git_commit": _git_commit(), "versions": versions()}
    p = dict(_PROVENANCE)
    p["versions"] = dict(p["versions"], mpi_library=mpi_library) if mpi_library else p["versions"]
    return p


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# The big arrays are stored with HDF5's built-in shuffle + gzip filters: lossless, read by h5py (and
# any HDF5 library) with no plugin, and ~20% smaller for float32 parameters and Adam moments.
# Every dataset also carries a Fletcher-32 checksum and the file format has checksummed metadata
# (HDF5 >= 1.10 object headers and superblock): a flipped byte is reported at load, not trained on.
_PACKED = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}
_CHECKED = {"fletcher32": True}
_LIBVER = ("v110", "latest")


def save(path: str | Path, state: ESState, history: list[dict], config_json: str, *, world_size: int,
         policy_json: str = "{}", history_keys: list[str] | None = None, mpi_library: str = "",
         extra_attrs: dict | None = None) -> Path:
    """Write a checkpoint atomically; returns the final path."""
    from .metrics import HISTORY_KEYS

    keys = history_keys or HISTORY_KEYS
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    prov = provenance(mpi_library)
    try:
        with h5py.File(tmp, "w", libver=_LIBVER) as f:
            f.attrs.update({
                "format": FORMAT, "layout_version": LAYOUT_VERSION, "esmpi_version": __version__,
                "git_commit": prov["git_commit"], "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "world_size": int(world_size), "config_json": config_json,
                "versions_json": json.dumps(prov["versions"], sort_keys=True),
                "num_params": int(state.theta.size), "obs_dim": int(state.obs.sum.size), "policy_json": policy_json,
            })
            for k, v in (extra_attrs or {}).items():
                f.attrs[k] = v
            s = f.create_group("state")
            s.attrs.update({"generation": state.generation, "episodes_so_far": state.episodes_so_far,
                            "timesteps_so_far": state.timesteps_so_far, "cutoff": state.cutoff})
            s.create_dataset("theta", data=state.theta, **_PACKED)
            o = s.create_group("optimizer")
            o.attrs["t"] = state.opt.t
            o.create_dataset("m", data=state.opt.m, **_PACKED)
            o.create_dataset("v", data=state.opt.v, **_PACKED)
            ob = s.create_group("obs_stats")
            ob.attrs["count"] = float(state.obs.count)
            ob.create_dataset("sum", data=state.obs.sum, **_CHECKED)
            ob.create_dataset("sumsq", data=state.obs.sumsq, **_CHECKED)
            table = np.zeros(len(history), dtype=[(k, np.float64) for k in keys])
            for i, row in enumerate(history):
                for k in keys:
                    table[k][i] = row.get(k, np.nan)
            f.create_dataset("history", data=table, maxshape=(None,), chunks=True, **_PACKED)
            f.attrs[schema.DIGEST_ATTR] = schema.content_digest(*_collect(f))
            f.flush()
            os.fsync(f.id.get_vfd_handle())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:   # disk full, read-only file system, permissions: the previous file is intact
        raise OutputError(f"{path}: cannot write the checkpoint ({e.strerror or e}); the previous checkpoint "
                          "is intact: free space or fix the location, then resume from it") from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path


# Everything a load reads: the groups whose attributes are checked and the datasets (checkpoint_schema).
_GROUPS = tuple(schema.V1_ATTRS)
_DATASETS = tuple(schema.V1_ARRAYS)
# h5py/HDF5 raise all of these for damaged files (bad offsets, checksums, decompression, decoding)
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError,
                UnicodeDecodeError, OverflowError, MemoryError)


def _collect(f) -> tuple[dict, dict]:
    """Attributes of the checked groups and the datasets of an open file, as stored."""
    attrs = {"": dict(f.attrs.items())}
    for g in _GROUPS[1:]:
        if g in f and isinstance(f[g], h5py.Group):
            attrs[g] = dict(f[g].attrs.items())
    arrays = {}
    for name in _DATASETS:
        if name in f:
            obj = f[name]
            arrays[name] = obj[()] if isinstance(obj, h5py.Dataset) else obj
    return attrs, arrays


def _read(path: Path) -> tuple[dict, dict]:
    """Every attribute of the checked groups and every dataset, as read (nothing interpreted yet)."""
    try:
        f = h5py.File(path, "r")
    except _READ_ERRORS as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file (corrupt or truncated?): {e}") from None
    try:
        with f:
            fmt = f.attrs.get("format")
            if fmt != FORMAT:
                raise CheckpointError(f"{path}: not an esmpi checkpoint (format attribute is {fmt!r})")
            lv = schema.check_attr(path, "", "layout_version", f.attrs.get("layout_version", -1), schema.Attr("int"))
            if lv > LAYOUT_VERSION:
                raise CheckpointError(f"{path}: layout version {lv} is newer than this esmpi supports "
                                      f"({LAYOUT_VERSION}); upgrade esmpi to read it")
            if lv < 1:
                raise CheckpointError(f"{path}: invalid layout version {lv}")
            return _collect(f)
    except CheckpointError:
        raise
    except _READ_ERRORS as e:
        raise CheckpointError(f"{path}: unreadable data (corrupt or truncated file?): {type(e).__name__}: {e}") from None


def load(path: str | Path) -> dict:
    """Read and validate a checkpoint (every dataset and attribute against ``checkpoint_schema``'s
    tables, sizes against the policy the file describes). Returns dict(state=ESState,
    history=list[dict], config_json, attrs=dict). Raises CheckpointError naming the file and what is
    wrong; nothing is used before everything is checked."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    raw_attrs, arrays = _read(path)
    checked = schema.validate(path, raw_attrs, arrays, schema.V1_ATTRS, schema.V1_ARRAYS)
    attrs, s, o, ob = checked[""], checked["state"], checked["state/optimizer"], checked["state/obs_stats"]
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
    state = ESState(
        theta=arrays["state/theta"],
        opt=optim.OptState(o["t"], arrays["state/optimizer/m"], arrays["state/optimizer/v"]),
        obs=ObsStats(arrays["state/obs_stats/sum"], arrays["state/obs_stats/sumsq"], ob["count"]),
        generation=s["generation"], episodes_so_far=s["episodes_so_far"],
        timesteps_so_far=s["timesteps_so_far"], cutoff=s["cutoff"])
    table = arrays["history"]
    from .metrics import INT_KEYS
    history = [{k: (int(row[k]) if k in INT_KEYS and np.isfinite(row[k]) else float(row[k])) for k in table.dtype.names}
               for row in table]
    return {"state": state, "history": history, "config_json": attrs["config_json"], "attrs": attrs}
