"""What a checkpoint must hold, as tables, and the one validator that checks a read file against them.

A checkpoint is trusted in nothing: before any of it is used, every dataset's dtype, shape and
finiteness and every attribute's type (number, string, JSON of the right kind) is checked against
the tables below, and the array sizes against the policy the file itself describes
(``policy_json``: ``num_params`` from its layer sizes, ``obs_dim`` from its input size). The tables
are data, not code, so a new layout adds a table and reuses ``validate``.

``validate(path, attrs, arrays, attr_spec, array_spec, dims)``: ``attrs`` maps a group name ("" for
the root) to its attributes, ``arrays`` maps a dataset name to the array read; raises
``CheckpointError`` naming the file, the attribute or dataset and what was expected. This module does
not read files (``esmpi.checkpoint`` does) and imports no h5py.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from .errors import CheckpointError


@dataclass(frozen=True)
class Attr:
    """``kind``: 'int', 'float', 'str' or 'json'; ``json_type``: dict or list for 'json'."""

    kind: str
    min: float | None = None
    json_type: type | None = None
    required: bool = True


@dataclass(frozen=True)
class Array:
    """``shape``: ints or names of dimensions resolved from ``dims``; ``fields``: for a compound table,
    the dtype every field must have (the field names are free)."""

    dtype: str
    shape: tuple
    finite: bool = True
    nonneg: bool = False
    fields: str | None = None


# Root attribute holding the sha256 of everything else (every attribute of the checked groups and
# every dataset): HDF5 checksums its metadata and our datasets, but not variable-length strings
# (config_json, policy_json live in the unchecksummed global heap), so a flipped byte there would
# otherwise load as a different config. Files without it (written before) are read unverified.
DIGEST_ATTR = "content_sha256"


# ---- layout 1 (docs/checkpoint.md)
V1_ATTRS = {
    "": {"format": Attr("str"), "layout_version": Attr("int", min=1), "num_params": Attr("int", min=1),
         "obs_dim": Attr("int", min=0), "world_size": Attr("int", min=1), "config_json": Attr("json", json_type=dict),
         "policy_json": Attr("json", json_type=dict), "versions_json": Attr("json", json_type=dict),
         "esmpi_version": Attr("str"), "git_commit": Attr("str"), "created_utc": Attr("str"),
         "resumes_json": Attr("json", json_type=list, required=False),
         DIGEST_ATTR: Attr("str", required=False)},
    "state": {"generation": Attr("int", min=0), "episodes_so_far": Attr("int", min=0),
              "timesteps_so_far": Attr("int", min=0), "cutoff": Attr("int", min=1)},
    "state/optimizer": {"t": Attr("int", min=0)},
    "state/obs_stats": {"count": Attr("float", min=0)},
}
# ---- layout 2: the root attributes (the state itself is checked against a template TrainState built
# from the file's config: esmpi.state.rebuild; the history as in layout 1)
V2_ROOT = {**V1_ATTRS[""], "strategy": Attr("str"), "bc_dim": Attr("int", min=0, required=False)}

V1_ARRAYS = {
    "state/theta": Array("float32", ("num_params",)),
    "state/optimizer/m": Array("float32", ("num_params",)),
    "state/optimizer/v": Array("float32", ("num_params",), nonneg=True),
    "state/obs_stats/sum": Array("float64", ("obs_dim",)),
    "state/obs_stats/sumsq": Array("float64", ("obs_dim",), nonneg=True),
    # NaN marks a missing value in the history (e.g. no evaluation that generation); +-inf is a
    # legitimate return of an all-failed generation, so finiteness is not required here
    "history": Array("void", (None,), finite=False, fields="float64"),
}



def _canon(v) -> bytes:
    if isinstance(v, str):
        return b"s" + v.encode("utf-8", "surrogatepass")
    if isinstance(v, bytes):
        return b"b" + v
    a = np.ascontiguousarray(np.asarray(v))
    if a.dtype.kind == "O":
        return b"o" + repr(a.tolist()).encode()
    return f"a{a.dtype.descr}{a.shape}".encode() + a.tobytes()


def content_digest(attrs: dict, arrays: dict) -> str:
    """sha256 of the attributes (``{group: {name: value}}``, ``DIGEST_ATTR`` left out) and arrays, in
    a canonical order: the same bytes whether computed from the values written or the values read."""
    h = hashlib.sha256()
    for group in sorted(attrs):
        for name in sorted(attrs[group]):
            if not (group == "" and name == DIGEST_ATTR):
                h.update(f"{group}/{name}\0".encode() + _canon(attrs[group][name]) + b"\0")
    for name in sorted(arrays):
        h.update(f"{name}\0".encode() + _canon(arrays[name]) + b"\0")
    return h.hexdigest()


def check_digest(path, attrs: dict, arrays: dict) -> None:
    want = attrs.get("", {}).get(DIGEST_ATTR)
    if want is None:
        return
    if not isinstance(want, str) or content_digest(attrs, arrays) != want:
        raise CheckpointError(f"{path}: content checksum ({DIGEST_ATTR}) does not match: the file is damaged; "
                              "use an earlier checkpoint")


def _where(group: str, name: str) -> str:
    return f"attribute '{group + '/' if group else ''}{name}'"


def check_attr(path, group: str, name: str, value, spec: Attr):
    """The attribute converted to a plain Python value, or CheckpointError."""
    where = f"{path}: {_where(group, name)}"
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        raise CheckpointError(f"{where} is raw bytes, expected a {spec.kind}")
    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise CheckpointError(f"{where} is {value!r} ({type(value).__name__}), expected an integer")
    elif spec.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CheckpointError(f"{where} is {value!r} ({type(value).__name__}), expected a finite number")
        value = float(value)
    elif spec.kind in ("str", "json"):
        if not isinstance(value, str):
            raise CheckpointError(f"{where} is {type(value).__name__} {value!r:.60}, expected a string")
        if spec.kind == "json":
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as e:
                raise CheckpointError(f"{where} is not valid JSON ({e})") from None
            if spec.json_type is not None and not isinstance(parsed, spec.json_type):
                raise CheckpointError(f"{where} holds JSON {type(parsed).__name__}, expected a "
                                      f"{'JSON object' if spec.json_type is dict else 'JSON list'}")
    else:  # pragma: no cover - a table error, not input
        raise ValueError(spec.kind)
    if spec.min is not None and value < spec.min:
        raise CheckpointError(f"{where} is {value!r}, expected >= {spec.min:g}")
    return value


def check_array(path, name: str, a, spec: Array, dims: dict) -> np.ndarray:
    where = f"{path}: dataset '{name}'"
    if not isinstance(a, np.ndarray):
        raise CheckpointError(f"{where} is {type(a).__name__}, expected an array")
    shape = tuple(dims[s] if isinstance(s, str) else s for s in spec.shape)
    if a.ndim != len(shape) or any(want is not None and got != want for got, want in zip(a.shape, shape)):
        raise CheckpointError(f"{where} has shape {a.shape}, expected "
                              f"({', '.join('N' if s is None else str(s) for s in shape)},)"
                              + (f" from {', '.join(f'{k} = {v}' for k, v in dims.items())}" if dims else ""))
    if spec.fields is not None:
        if a.dtype.names is None or any(a.dtype[n] != np.dtype(spec.fields) for n in a.dtype.names):
            raise CheckpointError(f"{where} has dtype {a.dtype}, expected a table of {spec.fields} columns")
        cols = [a[n] for n in a.dtype.names]
    else:
        if a.dtype != np.dtype(spec.dtype):
            raise CheckpointError(f"{where} has dtype {a.dtype}, expected {spec.dtype}")
        cols = [a]
    for c in cols:
        if spec.finite and not np.all(np.isfinite(c)):
            raise CheckpointError(f"{where} holds {int(np.sum(~np.isfinite(c)))} NaN/inf value(s); "
                                  "a saved state is always finite (the file is damaged)")
        if spec.nonneg and np.any(c < 0):
            raise CheckpointError(f"{where} holds negative values, expected >= 0 (the file is damaged)")
    return a


def validate(path, attrs: dict, arrays: dict, attr_spec: dict, array_spec: dict, dims: dict | None = None,
             digest: bool = True) -> dict:
    """Check everything (structure first, for the most specific message, then the content checksum
    when the file has one); returns ``{group: {name: plain value}}`` of the attributes in ``attr_spec``
    (other attributes pass through unchanged). ``dims`` may be given, or is derived by ``dims_of``
    from the root attributes."""
    out = {}
    for group, specs in attr_spec.items():
        have = attrs.get(group, {})
        conv = dict(have)
        for name, spec in specs.items():
            if name not in have:
                if spec.required:
                    raise CheckpointError(f"{path}: missing {_where(group, name)}: the file is truncated or not "
                                          "an esmpi checkpoint")
                continue
            conv[name] = check_attr(path, group, name, have[name], spec)
        out[group] = conv
    if "config_json" in out.get("", {}):
        check_config(path, out[""])
    if dims is None:
        dims = dims_of(path, out[""])
    for name, spec in array_spec.items():
        if name not in arrays:
            raise CheckpointError(f"{path}: missing dataset '{name}': the file is truncated or not an esmpi checkpoint")
        check_array(path, name, arrays[name], spec, dims)
    if digest:
        check_digest(path, attrs, arrays)
    return out


# Fields of an MLP's policy_json read by esmpi.policy_io beyond the layer sizes and action
POLICY_FIELDS = {"obs_clip": Attr("float", min=0), "obs_std_floor": Attr("float", min=0),
                 "env_id": Attr("str"), "max_episode_steps": Attr("int", min=0)}


def check_config(path, root: dict) -> None:
    """``config_json`` must be a config esmpi accepts (the same validation as a job file)."""
    from .config import config_from_dict
    from .errors import ConfigError

    try:
        config_from_dict(json.loads(root["config_json"]), "config_json")
    except ConfigError as e:
        raise CheckpointError(f"{path}: attribute 'config_json' is not a valid esmpi config: "
                              + "; ".join(str(e).splitlines())) from None


def dims_of(path, root: dict) -> dict:
    """``num_params`` and ``obs_dim`` as the file's policy describes them, cross-checked with the
    root attributes. An MLP policy fixes both; another objective (``esmpi.optimize``) only records
    the attributes."""
    from .policy_io import spec_from_policy_json

    dims = {"num_params": root["num_params"], "obs_dim": root["obs_dim"]}
    policy = json.loads(root["policy_json"])
    if policy.get("type") not in ("mlp", "gru"):   # a CNN (Atari), a supervised net or a black-box f: the attributes
        return dims
    try:
        spec = spec_from_policy_json(policy)
        num_params, obs_dim = spec.num_params, spec.obs_dim
    except CheckpointError as e:
        raise CheckpointError(f"{path}: attribute 'policy_json': {e}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{path}: attribute 'policy_json' does not describe a policy ({type(e).__name__}: "
                              f"{e})") from None
    for key, kind in POLICY_FIELDS.items():
        if key in policy:
            check_attr(path, "", f"policy_json[{key!r}]", policy[key], kind)
    if num_params != dims["num_params"]:
        raise CheckpointError(f"{path}: attribute 'num_params' is {dims['num_params']} but policy_json describes "
                              f"{num_params} parameters (layers {spec.layer_sizes})")
    if dims["obs_dim"] not in (0, obs_dim):
        raise CheckpointError(f"{path}: attribute 'obs_dim' is {dims['obs_dim']} but policy_json takes "
                              f"{obs_dim} inputs")
    return dims
