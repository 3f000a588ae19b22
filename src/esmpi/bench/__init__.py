"""``python -m esmpi.bench``: esmpi's performance benchmark (``make bench``, ``make bench-ci``).

Measures whatever ``esmpi.objectives``, ``policy``, ``noise``, ``comm`` and ``train`` currently contain
(it imports and calls them), so re-running it measures new code. Writes ``bench/out/report.json``
(every figure: value, unit, target, op, met, note, repeats, load, cpu/wall, samples) and
``bench/out/report.md``; a full run also copies the table to ``docs/bench.md``.

Sections (modules):
1. ``rollout``: esmpi's ``EnvObjective.episode`` (obs normalisation on, fast MuJoCo step) vs a bare
   Gymnasium ``env.unwrapped.step`` loop and a bare ``mj_step`` loop, HalfCheetah-v5 64-64 and
   Humanoid-v5 256-256, interleaved.
2. ``update``: ``NoiseTable.weighted_sum`` for d = 160k, 5,000 pairs, 250M table: GB/s, bitwise vs
   ``weighted_sum_reference``; also esmpi's previous kernel (``weighted_sum_j1``) as a baseline.
3. ``update.node_split_weighted_sum``: the node-split update prototype, timed at k = 1, 2 ranks.
4. ``memory``: PSS of the noise table summed over the ranks of a node, k = 1, 2, 4.
5. ``trainer_probe`` + ``collectives``: collective time per generation (trainer and micro-benchmark)
   and startup (launch to first generation) with a 250M table, k = 1, 2, 4.
6. ``trainer_probe``: per-rank rollout/idle fractions on Humanoid-v5 at k = 2.
7. ``scale``: a calibrated model of a Humanoid generation at 18-1,440 cores (``python -m esmpi.bench.scale``).

Method: every figure is a median of repeats; A/B comparisons are medians of per-repeat ratios with the
variants interleaved (ABBA order); each timing records the 1-minute load average and the process's
CPU/wall ratio, because the machine is shared. See ``docs/bench.md``.
"""

from .update import NodeSplitSum, node_split_weighted_sum  # noqa: F401

__all__ = ["node_split_weighted_sum", "NodeSplitSum"]
