"""``SupervisedObjective``: a classifier's theta scored on images of a node-shared dataset (issue 14).

The ES loop's objective interface (see ``esmpi.objectives``) for supervised learning, as in Zhang,
Clune & Stanley (2017):

- ``episode(theta, seed, ...)``: reward = minus the mean softmax cross-entropy of theta on a
  mini-batch of ``batch_size`` training images; ``length`` = the number of images scored. The
  63-bit ``seed`` *addresses* the mini-batch: its images are
  ``numpy.random.default_rng(seed).choice(n_train, batch_size, replace=False)`` (``batch_indices``).
  The strategy decides the sharing: one seed for every pseudo-offspring of a generation is
  mini-batch ES, one seed per pseudo-offspring is no-mini-batch ES.
- ``eval_episode(theta, seed, cutoff)``: ``ret`` = test accuracy as a **fraction** in [0, 1] on
  the whole test set (or its first ``test_limit`` images), ``length`` = the images scored.
- ``gradient(theta, seed)``: the exact gradient of the same reward on the same addressed batch,
  ``(num_params,)`` float32, for the gradient-correlation study.

A non-finite loss or logit (e.g. from a non-finite theta) fails the evaluation: ret -inf, never an
exception. L2 regularisation belongs to the update (``l2coeff``), not to the reward.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from .episode import EpisodeResult
from ..supervised.datasets import Dataset, gather
from ..supervised.nets import PRESETS, Net, NetSpec
from ..supervised.settings import SupervisedSettings  # noqa: F401  (re-exported: the objective's settings)


class SupervisedObjective:
    obs_dim = 0
    bc_dim = 0
    max_episode_steps = 1

    def __init__(self, settings: SupervisedSettings, comm=None):
        settings.check()
        self.settings = s = settings
        self.dataset = Dataset(s.data, comm)
        train, test = self.dataset["train"], self.dataset["test"]
        if s.batch_size > train.n:
            raise ConfigError(f"{s.key_prefix}.batch_size = {s.batch_size} is larger than the {train.n} training "
                              f"images of {s.data}; use at most {train.n}")
        rows, cols = self.dataset.image_shape
        convs, hidden = PRESETS[s.net]
        self.spec = NetSpec((rows, cols, 1), convs, tuple(s.hidden) or hidden, self.dataset.num_classes)
        self.net = Net(self.spec, np.float32)
        self.num_params = self.spec.num_params
        self.n_test = test.n if s.test_limit == 0 else min(s.test_limit, test.n)
        self._x = np.empty((s.batch_size, rows, cols, 1), np.float32)
        self._y = np.empty(s.batch_size, np.int32)
        chunk = min(s.eval_chunk, self.n_test)
        self._xe = np.empty((chunk, rows, cols, 1), np.float32)
        self._ye = np.empty(chunk, np.int32)

    def initial_theta(self, rng: np.random.Generator) -> np.ndarray:
        return self.spec.init_theta(rng)

    def set_obs_norm(self, mean, std) -> None:
        pass

    def batch_indices(self, seed: int) -> np.ndarray:
        """(batch_size,) int64 training-image indices addressed by ``seed`` (distinct within a batch)."""
        n = self.dataset["train"].n
        return np.random.default_rng(int(seed)).choice(n, self.settings.batch_size, replace=False)

    def _load_batch(self, seed: int):
        tr = self.dataset["train"]
        gather(tr.images, tr.labels, self.batch_indices(seed), self._x, self._y)
        return self._x, self._y

    def episode(self, theta, seed, cutoff, record_obs=False, action_noise_rng=None, abandon=None) -> EpisodeResult:
        x, y = self._load_batch(seed)
        with np.errstate(all="ignore"):   # a non-finite theta is reported by the result, not a warning
            if self.settings.reward == "accuracy":
                n, finite = self.net.correct(theta, x, y)
                if not finite:
                    return EpisodeResult(-math.inf, len(y), True, "non-finite logits")
                return EpisodeResult(n / len(y), len(y))
            loss = self.net.loss(theta, x, y)
        if not math.isfinite(loss):
            return EpisodeResult(-math.inf, len(y), True, f"non-finite cross-entropy {loss}")
        return EpisodeResult(-loss, len(y))

    def eval_episode(self, theta, seed, cutoff, addr: tuple = ()) -> EpisodeResult:
        """Test accuracy (fraction) of theta on the test set; ``seed`` and ``cutoff`` are unused.

        With ``eval_parts = P > 1``, the EVAL candidate whose address ends in ``e`` scores only part
        ``e % P`` of the test set, images ``[p n // P, (p + 1) n // P)``, and returns
        ``correct_p * P / n``: the mean over the P parts (the loop's EvalEpRewMean) is then the
        whole-set accuracy, up to float64 rounding (about 1e-16), and each rank scores 1/P of it."""
        parts = self.settings.eval_parts
        lo, hi = 0, self.n_test
        if parts > 1:
            p = int(addr[-1]) % parts if addr else 0
            lo, hi = p * self.n_test // parts, (p + 1) * self.n_test // parts
        correct, n, bad = self.eval_counts(theta, lo, hi)
        if bad:
            return EpisodeResult(-math.inf, n, True, bad)
        return EpisodeResult(correct * parts / self.n_test if parts > 1 else correct / n, n)

    def eval_counts(self, theta, lo: int, hi: int) -> tuple[int, int, str]:
        """(images classified right, images scored, failure reason or "") on test images [lo, hi).

        Integer counts, so a loop may split the test set over ranks and add the parts in any order
        and get exactly ``eval_episode``'s accuracy."""
        te = self.dataset["test"]
        chunk = self._ye.shape[0]
        correct = 0
        for a in range(lo, hi, chunk):
            b = min(a + chunk, hi)
            x, y = self._xe[: b - a], self._ye[: b - a]
            gather(te.images, te.labels, np.arange(a, b), x, y)
            with np.errstate(all="ignore"):
                n, finite = self.net.correct(theta, x, y)
            if not finite:
                return correct, hi - lo, f"non-finite logits on test images {a}..{b - 1}"
            correct += n
        return correct, hi - lo, ""

    def gradient(self, theta, seed) -> np.ndarray:
        """(num_params,) float32: the exact gradient of ``episode``'s reward on the batch ``seed`` addresses."""
        x, y = self._load_batch(seed)
        _, g = self.net.loss_and_grad(theta, x, y)
        np.negative(g, out=g)   # reward = -loss
        return g

    def spec_dict(self) -> dict:
        s = self.settings
        return {"type": "supervised", "dataset": self.dataset.spec(), "net_preset": s.net, "net": self.spec.to_dict(),
                "batch_size": s.batch_size, "test_images": self.n_test,
                "batch_rule": "numpy.random.default_rng(seed).choice(n_train, batch_size, replace=False)",
                "reward": ("fraction of the addressed batch classified right" if s.reward == "accuracy"
                           else "-mean softmax cross-entropy on the addressed batch"),
                "eval": "test accuracy, fraction in [0, 1]"}

    def close(self) -> None:
        pass
