"""Optimizers as pure functions ``(state, grad, theta) -> (step, new_state)``.

Sign convention: ``grad`` is a *descent* direction's negative, i.e. the gradient of a loss.
ES ascends the return, so the caller passes ``-g + l2coeff * theta`` (reference:
``optimizer.update(-g + l2coeff * theta)``) and adds the returned ``step`` to theta.
All arrays are float32 of shape ``(d,)``; the arithmetic is elementwise numpy, so every rank
computes identical bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class OptState:
    t: int            # number of updates taken
    m: np.ndarray     # (d,) float32: Adam first moment / SGD velocity
    v: np.ndarray = field(metadata={"nonneg": True})   # (d,) float32: Adam second moment (zeros, unused, for SGD)


def init_state(d: int) -> OptState:
    return OptState(0, np.zeros(d, np.float32), np.zeros(d, np.float32))


def adam(state: OptState, grad: np.ndarray, stepsize: float, beta1: float, beta2: float, epsilon: float, **_):
    t = state.t + 1
    a = np.float32(stepsize * np.sqrt(1 - beta2**t) / (1 - beta1**t))
    # (1 - beta) in float64, then float32: 1 - float32(0.999) would be 1.3e-5 off
    b1, b2 = np.float32(beta1), np.float32(beta2)
    m = b1 * state.m + np.float32(1 - beta1) * grad
    v = b2 * state.v + np.float32(1 - beta2) * (grad * grad)
    step = -a * m / (np.sqrt(v) + np.float32(epsilon))
    return step.astype(np.float32), OptState(t, m, v)


def sgd(state: OptState, grad: np.ndarray, stepsize: float, momentum: float, **_):
    mom = np.float32(momentum)
    m = mom * state.m + np.float32(1 - momentum) * grad
    step = (-np.float32(stepsize)) * m
    return step.astype(np.float32), OptState(state.t + 1, m, state.v)


OPTIMIZERS = {"adam": adam, "sgd": sgd}
