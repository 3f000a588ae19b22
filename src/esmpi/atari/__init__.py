"""Atari from pixels: the ALE game (``games``, the only ale-py import), the run's settings
(``settings``) and the seeded reference batch for virtual batch normalisation (``refbatch``).

The objective that scores a theta on a game lives in ``esmpi.objectives.atari``; the CNN policies
in ``esmpi.policies.cnn``; gymnasium's DeepMind preprocessing is applied in ``esmpi.envs``.
"""
