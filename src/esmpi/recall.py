"""A recurrent memory task: delayed recall of a cue (``esmpi/DelayedRecall-v0``), for SM-G on a GRU.

An episode is ``trials`` trials of ``delay + 2`` steps each. A trial shows a cue c in {0, 1} on its
first step (observation ``[c == 0, c == 1, 0]``), then ``delay`` blank steps (``[0, 0, 0]``), then
a recall step (``[0, 0, 1]``): the action taken there (Discrete(2)) scores 1 if it equals c, else
0; every other action is ignored. The episode ends (``terminated``) after the last recall step, so
its return is the number of trials recalled, in [0, trials]. The cues are drawn per episode from the
env's seeded generator (``reset(seed=...)``), so a policy cannot memorise them.

A policy without memory scores trials / 2 on average, and no feed-forward policy can do better:
the recall observation is the same whatever the cue. Recalling every trial needs a state that keeps
one bit for ``delay`` steps and is overwritten by the next cue. Defaults: 4 trials, delay 8
(40 steps). This module has no gymnasium import; ``esmpi.envs`` wraps and registers it.
"""

from __future__ import annotations

import numpy as np

DELAYED_RECALL_ID = "esmpi/DelayedRecall-v0"
MAX_STEPS = 10_000        # the registered limit; the task ends itself after trials * (delay + 2) steps


class DelayedRecall:
    """The task's state machine; ``reset(rng) -> obs (3,)``, ``step(action) -> (obs, reward, done)``."""

    def __init__(self, trials: int = 4, delay: int = 8):
        if int(trials) < 1 or int(delay) < 0:
            raise ValueError(f"DelayedRecall needs trials >= 1 and delay >= 0, got trials={trials}, delay={delay}")
        self.trials, self.delay = int(trials), int(delay)
        self.period = self.delay + 2
        self.length = self.trials * self.period

    def _obs(self) -> np.ndarray:
        obs = np.zeros(3)
        phase = self.t % self.period
        if phase == 0:
            obs[self.cues[self.t // self.period]] = 1.0
        elif phase == self.period - 1:
            obs[2] = 1.0
        return obs

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        self.cues = rng.integers(0, 2, size=self.trials)
        self.t = 0
        return self._obs()

    def step(self, action) -> tuple[np.ndarray, float, bool]:
        """Act on the current observation; the next observation, the reward and whether the episode ended."""
        trial, phase = divmod(self.t, self.period)
        reward = float(int(action) == self.cues[trial]) if phase == self.period - 1 else 0.0
        self.t += 1
        done = self.t >= self.length
        return (np.zeros(3) if done else self._obs()), reward, done
