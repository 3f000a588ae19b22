"""Policies: a flat float32 theta -> an action, built from ``[policy]`` and injected into objectives.

``make(policy_cfg, obs_dim, action, obs_clip) -> (spec, policy)``: the spec knows the layout
(``num_params``, ``obs_dim``, ``layer_sizes``, ``init_theta(rng)``, ``unflatten``), the policy is the
callable the objective runs (``set_theta``, ``set_obs_norm``, ``reset()`` at the start of every
episode, ``__call__(obs) -> action or None`` when obs holds NaN/inf).
``policy.kind`` picks the family: ``mlp`` (``esmpi.policies.mlp``; ``hidden = []`` is the linear
policy of ARS) or ``gru`` (``esmpi.policies.gru``: one recurrent cell, for tasks that need memory).
Convolutional policies for pixels live beside them and are chosen by their objective. To add a
family: a module with a spec and a policy of that interface, one branch here, its ``policy_json``
in ``EnvObjective.spec_dict`` and ``esmpi.policy_io.spec_from_policy_json``, and its output
gradients in ``esmpi.policies.sensitivity`` if SM-G should mutate it.
"""

from __future__ import annotations


def make(policy_cfg, obs_dim: int, action, obs_clip: float):
    from ..errors import ConfigError

    if policy_cfg.kind == "gru":
        from .gru import GRUPolicy, GRUSpec
        spec = GRUSpec(obs_dim, policy_cfg.hidden[0], action.dim if action.kind == "box" else action.n, action)
        return spec, GRUPolicy(spec, obs_clip)
    from .mlp import MLPPolicy, MLPSpec

    if policy_cfg.action_bins and action.kind != "box":
        raise ConfigError(f"policy.action_bins={policy_cfg.action_bins} needs a Box action space; this env has a "
                          "Discrete one: set policy.action_bins = 0")
    spec = MLPSpec(obs_dim, action, tuple(policy_cfg.hidden), policy_cfg.nonlinearity, policy_cfg.action_bins,
                   policy_cfg.hidden_init_std, policy_cfg.output_init_std)
    return spec, MLPPolicy(spec, obs_clip)
