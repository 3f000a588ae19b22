"""The only h5py import: atomic save and validated load of a ``TrainState`` + history + config.

Layout (``LAYOUT_VERSION`` 2; documented in docs/checkpoint.md, readable with h5py alone):

    /                      attrs: format="esmpi-checkpoint", layout_version, strategy, esmpi_version,
                           git_commit, created_utc, world_size, config_json, versions_json,
                           num_params, obs_dim, bc_dim, policy_json (+ resumes_json)
    /state                 the TrainState, walked by ``esmpi.state.walk``: every array is a dataset
                           at its path, every scalar an attribute of its parent group, e.g.
                           /state/strategy/theta (num_params,) float32, /state/strategy/optimizer/m,
                           /state/obs/sum, attrs generation, episodes_so_far, timesteps_so_far, cutoff
    /history               compound table (generations,) with one float64 field per history key

No hand-listed layout: a new field of a strategy's state is written, read, validated and hashed by
construction. Layout 1 files (esmpi's first loop: /state/theta, /state/optimizer, /state/obs_stats)
are read through a path map and hold an OpenAI-ES state.

Loading trusts nothing in the file: the state is rebuilt against a template made from the config the
file claims (shapes from the policy's parameter count and the env's observation size), so every
dataset's dtype, shape and finiteness and every attribute's type is checked before anything runs.

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

from . import __version__
from .errors import CheckpointError
from .state import StateError, TrainState, rebuild, walk

FORMAT = "esmpi-checkpoint"
LAYOUT_VERSION = 2
# layout 1 path -> layout 2 path prefix (an OpenAI-ES state written by the first loop)
_V1_PATHS = (("/strategy/theta", "/theta"), ("/strategy/optimizer/", "/optimizer/"), ("/obs/", "/obs_stats/"))


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


def save(path: str | Path, state: TrainState, history: list[dict], config_json: str, *, world_size: int,
         policy_json: str = "{}", history_keys: list[str] | None = None, mpi_library: str = "",
         extra_attrs: dict | None = None, strategy: str = "openai_es", bc_dim: int = 0) -> Path:
    """Write a checkpoint atomically; returns the final path."""
    from .metrics import HISTORY_KEYS

    keys = history_keys or HISTORY_KEYS
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    prov = provenance(mpi_library)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update({
                "format": FORMAT, "layout_version": LAYOUT_VERSION, "strategy": strategy, "esmpi_version": __version__,
                "git_commit": prov["git_commit"], "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "world_size": int(world_size), "config_json": config_json,
                "versions_json": json.dumps(prov["versions"], sort_keys=True),
                "num_params": int(state.theta.size), "obs_dim": int(state.obs.sum.size), "bc_dim": int(bc_dim),
                "policy_json": policy_json,
            })
            for k, v in (extra_attrs or {}).items():
                f.attrs[k] = v
            root = f.create_group("state")
            for p, v, _ in walk(state):
                parent, _, name = p.rpartition("/")
                g = root.require_group(parent.lstrip("/")) if parent else root
                if isinstance(v, np.ndarray):
                    g.create_dataset(name, data=v, **(_PACKED if v.ndim and v.size else {}))
                else:
                    g.attrs[name] = v
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


def _reader(group, layout: int):
    """``read(path)`` of the state walk: a dataset at the path, else an attribute of its parent group."""
    def read(p: str):
        if layout == 1:
            for new, old in _V1_PATHS:
                if p.startswith(new):
                    p = old + p[len(new):]
        parent, _, name = p.rpartition("/")
        g = group[parent.lstrip("/")] if parent.strip("/") else group
        if not isinstance(g, h5py.Group):
            raise KeyError(p)
        if name in g:
            obj = g[name]
            if not isinstance(obj, h5py.Dataset):
                raise StateError(f"'{p}' is a group, expected a dataset")
            return obj[()]
        if name in g.attrs:
            v = g.attrs[name]
            return v.item() if isinstance(v, np.generic) else v
        raise KeyError(p)
    return read


def _attr(attrs: dict, path: Path, key: str, kind: type, what: str):
    v = attrs.get(key)
    if v is None:
        raise CheckpointError(f"{path}: missing attribute '{key}': the file is truncated or not an esmpi checkpoint")
    ok = isinstance(v, kind) and not isinstance(v, bool) if kind is int else isinstance(v, kind)
    if not ok:
        raise CheckpointError(f"{path}: attribute '{key}' is {v!r} ({type(v).__name__}), expected {what}")
    return v


def _check_policy_sizes(path: Path, policy: dict, num_params: int, obs_dim: int) -> None:
    """The sizes the file claims must be those of the policy it describes (an MLP's layer sizes)."""
    sizes = policy.get("layer_sizes")
    if sizes is None:
        return
    if not (isinstance(sizes, list) and len(sizes) >= 2 and all(isinstance(n, int) and n > 0 for n in sizes)):
        raise CheckpointError(f"{path}: attribute 'policy_json' has layer_sizes {sizes!r}, expected a list of positive integers")
    want = sum(sizes[i] * sizes[i + 1] + sizes[i + 1] for i in range(len(sizes) - 1))
    if want != num_params:
        raise CheckpointError(f"{path}: attribute 'num_params' is {num_params} but the policy's layer sizes {sizes} "
                              f"have {want} parameters")
    if obs_dim not in (0, sizes[0]):
        raise CheckpointError(f"{path}: attribute 'obs_dim' is {obs_dim} but the policy takes {sizes[0]} inputs")


def template(cfg, num_params: int, obs_dim: int, bc_dim: int = 0, extra: dict | None = None) -> TrainState:
    """An initial state of the shape a run of ``cfg`` with these sizes has: what a file is checked against."""
    from . import strategies
    from .obs_norm import ObsStats

    ctx = strategies.Context(run_seed=cfg.run.seed, d=num_params, noise_size=cfg.noise.size, obs_dim=obs_dim,
                             bc_dim=bc_dim)
    strat = strategies.make(cfg, ctx).init(np.zeros(num_params, np.float32))
    return TrainState(strat, ObsStats.initial(obs_dim), cutoff=1, extra=dict(extra or {}))


def load(path: str | Path) -> dict:
    """Read and validate a checkpoint. Returns dict(state=TrainState, history=list[dict], config_json,
    config, attrs=dict). Raises CheckpointError naming the file and what is wrong."""
    from .config import config_from_dict
    from .errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file (corrupt or truncated?): {e}") from None
    with f:
        try:
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        except (OSError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable attributes (corrupt file?): {e}") from None
        if attrs.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an esmpi checkpoint (format attribute is {attrs.get('format')!r})")
        lv = _attr(attrs, path, "layout_version", int, "an integer")
        if lv > LAYOUT_VERSION:
            raise CheckpointError(f"{path}: layout version {lv} is newer than this esmpi supports ({LAYOUT_VERSION}); "
                                  "upgrade esmpi to read it")
        if lv < 1:
            raise CheckpointError(f"{path}: invalid layout version {lv}")
        num_params = _attr(attrs, path, "num_params", int, "a positive integer")
        obs_dim = _attr(attrs, path, "obs_dim", int, "a non-negative integer")
        bc_dim = attrs.get("bc_dim", 0)
        if num_params < 1 or obs_dim < 0 or not isinstance(bc_dim, int) or bc_dim < 0:
            raise CheckpointError(f"{path}: attributes num_params={num_params!r}, obs_dim={obs_dim!r}, bc_dim={bc_dim!r} "
                                  "are not valid sizes")
        for key in ("config_json", "policy_json"):
            text = _attr(attrs, path, key, str, "a JSON string") if key == "config_json" else attrs.get(key, "{}")
            try:
                if not isinstance(json.loads(text), dict):
                    raise ValueError("not a JSON object")
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"{path}: attribute '{key}' is not a JSON object ({e})") from None
        _check_policy_sizes(path, json.loads(attrs.get("policy_json", "{}")), num_params, obs_dim)
        try:
            cfg = config_from_dict(json.loads(attrs["config_json"]), f"{path} (attribute config_json)")
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
        strategy = attrs.get("strategy", "openai_es")
        if strategy != cfg.strategy.name:
            raise CheckpointError(f"{path}: attribute 'strategy' is {strategy!r} but its config says "
                                  f"strategy.name = {cfg.strategy.name!r}")
        try:
            from .objectives import extra_template   # e.g. the VBN reference batch of an Atari run
            want = template(cfg, num_params, obs_dim, bc_dim, extra_template(cfg))
            state = rebuild(want, _reader(_require(f, "state", path), lv))
            table = _require(f, "history", path)[()]
        except KeyError as e:
            raise CheckpointError(f"{path}: missing {e}: the file is truncated or not an esmpi checkpoint") from None
        except StateError as e:
            raise CheckpointError(f"{path}: state {e}") from None
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: unreadable data (corrupt file?): {e}") from None
    names = table.dtype.names or ()
    if "Generation" not in names:
        raise CheckpointError(f"{path}: dataset 'history' has no Generation column: the file is damaged")
    from .metrics import INT_KEYS
    history = [{k: (int(row[k]) if k in INT_KEYS and np.isfinite(row[k]) else float(row[k])) for k in names}
               for row in table]
    return {"state": state, "history": history, "config_json": attrs["config_json"], "config": cfg, "attrs": attrs}
