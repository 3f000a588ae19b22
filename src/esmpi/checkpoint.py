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
directory is fsynced: a crash at any moment leaves the previous file intact. No pickle anywhere:
attributes are numbers, strings or JSON strings.
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
from .errors import CheckpointError
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
_PACKED = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


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
        with h5py.File(tmp, "w") as f:
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
            ob.create_dataset("sum", data=state.obs.sum)
            ob.create_dataset("sumsq", data=state.obs.sumsq)
            table = np.zeros(len(history), dtype=[(k, np.float64) for k in keys])
            for i, row in enumerate(history):
                for k in keys:
                    table[k][i] = row.get(k, np.nan)
            f.create_dataset("history", data=table, maxshape=(None,), chunks=True, **_PACKED)
            f.flush()
            os.fsync(f.id.get_vfd_handle())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _require(f, name: str, path: Path):
    if name not in f:
        raise CheckpointError(f"{path}: missing '{name}': the file is truncated or not an esmpi checkpoint")
    return f[name]


def load(path: str | Path) -> dict:
    """Read and validate a checkpoint. Returns dict(state=ESState, history=list[dict], config_json,
    attrs=dict). Raises CheckpointError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file (corrupt or truncated?): {e}") from None
    with f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an esmpi checkpoint (format attribute is {attrs.get('format')!r})")
        lv = int(attrs.get("layout_version", -1))
        if lv > LAYOUT_VERSION:
            raise CheckpointError(f"{path}: layout version {lv} is newer than this esmpi supports ({LAYOUT_VERSION}); "
                                  "upgrade esmpi to read it")
        if lv < 1:
            raise CheckpointError(f"{path}: invalid layout version {lv}")
        try:
            s = _require(f, "state", path)
            theta = _require(s, "theta", path)[()]
            o = _require(s, "optimizer", path)
            ob = _require(s, "obs_stats", path)
            state = ESState(
                theta=theta,
                opt=optim.OptState(int(o.attrs["t"]), _require(o, "m", path)[()], _require(o, "v", path)[()]),
                obs=ObsStats(_require(ob, "sum", path)[()], _require(ob, "sumsq", path)[()], float(ob.attrs["count"])),
                generation=int(s.attrs["generation"]), episodes_so_far=int(s.attrs["episodes_so_far"]),
                timesteps_so_far=int(s.attrs["timesteps_so_far"]), cutoff=int(s.attrs["cutoff"]))
            table = _require(f, "history", path)[()]
        except KeyError as e:
            raise CheckpointError(f"{path}: missing attribute {e}: the file is truncated or not an esmpi checkpoint") from None
        except OSError as e:
            raise CheckpointError(f"{path}: unreadable data (corrupt file?): {e}") from None
    if state.theta.dtype != np.float32 or state.theta.shape != (int(attrs["num_params"]),):
        raise CheckpointError(f"{path}: theta has dtype {state.theta.dtype} and shape {state.theta.shape}, "
                              f"expected float32 ({attrs['num_params']},)")
    names = table.dtype.names or ()
    from .metrics import INT_KEYS
    history = [{k: (int(row[k]) if k in INT_KEYS and np.isfinite(row[k]) else float(row[k])) for k in names}
               for row in table]
    return {"state": state, "history": history, "config_json": attrs["config_json"], "attrs": attrs}
