"""Policies: a flat float32 theta -> an action, built from ``[policy]`` and injected into objectives.

``make(policy_cfg, obs_dim, action, obs_clip) -> (spec, policy)``: the spec knows the layout
(``num_params``, ``init_theta(rng)``, ``unflatten``), the policy is the callable the objective runs
(``set_theta``, ``set_obs_norm``, ``__call__(obs) -> action or None`` when obs holds NaN/inf).
Today's only family is the MLP of ``esmpi.policies.mlp`` (``hidden = []`` is the linear policy of ARS);
convolutional policies for pixels live beside it and are chosen by their objective.
"""

from __future__ import annotations


def make(policy_cfg, obs_dim: int, action, obs_clip: float):
    from ..errors import ConfigError
    from .mlp import MLPPolicy, MLPSpec

    if policy_cfg.action_bins and action.kind != "box":
        raise ConfigError(f"policy.action_bins={policy_cfg.action_bins} needs a Box action space; this env has a "
                          "Discrete one: set policy.action_bins = 0")
    spec = MLPSpec(obs_dim, action, tuple(policy_cfg.hidden), policy_cfg.nonlinearity, policy_cfg.action_bins,
                   policy_cfg.hidden_init_std, policy_cfg.output_init_std)
    return spec, MLPPolicy(spec, obs_clip)
