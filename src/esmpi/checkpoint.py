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

from . import __version__
from . import checkpoint_schema as schema
from .errors import CheckpointError, OutputError
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
# Every dataset also carries a Fletcher-32 checksum and the file format has checksummed metadata
# (HDF5 >= 1.10 object headers and superblock): a flipped byte is reported at load, not trained on.
_PACKED = {"compression": "gzip", "compression_opts": 4, "shuffle": True, "fletcher32": True}
_CHECKED = {"fletcher32": True}
_LIBVER = ("v110", "latest")


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
        with h5py.File(tmp, "w", libver=_LIBVER) as f:
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
                    g.create_dataset(name, data=v, **(_PACKED if v.ndim and v.size else _CHECKED if v.size else {}))
                else:
                    g.attrs[name] = v
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


# h5py/HDF5 raise all of these for damaged files (bad offsets, checksums, decompression, decoding)
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError,
                UnicodeDecodeError, OverflowError, MemoryError)


def _collect(f) -> tuple[dict, dict]:
    """Every group's attributes ({"" (root) or "state/strategy": {name: value}}) and every dataset
    ({"state/strategy/theta": array}) of an open file, as stored."""
    attrs = {"": dict(f.attrs.items())}
    arrays = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            arrays[name] = obj[()]
        elif isinstance(obj, h5py.Group):
            attrs[name] = dict(obj.attrs.items())

    f.visititems(visit)
    return attrs, arrays


def _read(path: Path) -> tuple[dict, dict]:
    """Every attribute and dataset, as read (nothing interpreted yet)."""
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


def _reader(attrs: dict, arrays: dict, layout: int):
    """``read(path)`` of the state walk: the dataset at ``state<path>``, else an attribute of its group."""
    def read(p: str):
        if layout == 1:
            for new, old in _V1_PATHS:
                if p.startswith(new):
                    p = old + p[len(new):]
        full = "state" + p
        if full in arrays:
            return arrays[full]
        parent, _, name = full.rpartition("/")
        if name in attrs.get(parent, {}):
            v = attrs[parent][name]
            return v.item() if isinstance(v, np.generic) else v
        if full in attrs:
            raise StateError(p, "group", "is a group, expected a dataset or an attribute")
        raise KeyError(p)
    return read


def template(cfg, num_params: int, obs_dim: int, bc_dim: int = 0, extra: dict | None = None) -> TrainState:
    """An initial state of the shape a run of ``cfg`` with these sizes has: what a file is checked against."""
    from . import strategies
    from .obs_norm import ObsStats

    ctx = strategies.Context(run_seed=cfg.run.seed, d=num_params, noise_size=cfg.noise.size, obs_dim=obs_dim,
                             bc_dim=bc_dim)
    strat = strategies.make(cfg, ctx).init(np.zeros(num_params, np.float32))
    return TrainState(strat, ObsStats.initial(obs_dim), cutoff=1, extra=dict(extra or {}))


def load(path: str | Path) -> dict:
    """Read and validate a checkpoint: the root attributes against ``checkpoint_schema``'s table (types,
    a valid config, sizes against the policy the file describes), the state against a template made
    from that config (every leaf's dtype, shape, finiteness, type), the history table, then the
    content checksum. Returns dict(state=TrainState, history=list[dict], config_json, config,
    attrs=dict). Raises CheckpointError naming the file and what is wrong; nothing is used before
    everything is checked."""
    from .config import config_from_dict
    from .objectives import extra_template   # e.g. the VBN reference batch of an Atari run

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    raw_attrs, arrays = _read(path)
    lv = int(raw_attrs[""]["layout_version"])
    root_spec = schema.V2_ROOT if lv >= 2 else schema.V1_ATTRS[""]
    checked = schema.validate(path, {"": raw_attrs[""]}, {}, {"": root_spec}, {}, dims=None, digest=False)
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in checked[""].items()}
    dims = schema.dims_of(path, attrs)
    cfg = config_from_dict(json.loads(attrs["config_json"]), f"{path} (attribute config_json)")
    strategy = attrs.get("strategy", "openai_es")
    if strategy != cfg.strategy.name:
        raise CheckpointError(f"{path}: attribute 'strategy' is {strategy!r} but its config says "
                              f"strategy.name = {cfg.strategy.name!r}")
    try:
        want = template(cfg, dims["num_params"], dims["obs_dim"], int(attrs.get("bc_dim", 0)), extra_template(cfg))
        state = rebuild(want, _reader(raw_attrs, arrays, lv))
    except KeyError as e:
        raise CheckpointError(f"{path}: missing 'state{e.args[0]}': the file is truncated or not an esmpi "
                              "checkpoint") from None
    except StateError as e:
        raise CheckpointError(f"{path}: {e.kind} 'state{e.path}' {e.what}") from None
    if "history" not in arrays:
        raise CheckpointError(f"{path}: missing dataset 'history': the file is truncated or not an esmpi checkpoint")
    table = schema.check_array(path, "history", arrays["history"], schema.V1_ARRAYS["history"], dims)
    if "Generation" not in (table.dtype.names or ()):
        raise CheckpointError(f"{path}: dataset 'history' has no Generation column: the file is damaged")
    schema.check_digest(path, raw_attrs, arrays)
    from .metrics import INT_KEYS
    history = [{k: (int(row[k]) if k in INT_KEYS and np.isfinite(row[k]) else float(row[k])) for k in table.dtype.names}
               for row in table]
    return {"state": state, "history": history, "config_json": attrs["config_json"], "config": cfg, "attrs": attrs}
