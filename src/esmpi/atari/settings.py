"""``AtariSettings``: the ``[atari]`` section of a run (game, preprocessing, network, VBN), validated.

Every key is checked here with a one-line message naming ``<file>: atari.<key>`` and the fix, so a
bad job file fails before any env or policy is built. The defaults and why they were chosen are in
docs/atari.md; in short: DeepMind preprocessing (30 no-op starts, frame skip 4 with a max over the
last two frames, 84x84 grey, 4 stacked frames), no episodic life and no reward clipping (ES ranks
whole-game returns, so neither helps it), no sticky actions (as Salimans et al. 2017) and a
108,000-frame (30 minutes of play) episode cap.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import ConfigError

NETS = ("a3c", "nature")


@dataclass(frozen=True)
class AtariSettings:
    game: str = "pong"                 # ALE ROM id in snake_case, e.g. "pong", "space_invaders"
    frame_skip: int = 4                # emulator frames per agent step (action repeated, max of the last two)
    noop_max: int = 30                 # reset takes 1..noop_max no-op steps, drawn from the episode seed
    sticky_actions: float = 0.0        # ALE repeat_action_probability per frame (Machado et al.: 0.25)
    frame_cap: int = 108_000           # emulator frames per episode (ALE truncates), no-ops included
    frame_stack: int = 4               # frames per observation
    screen_size: int = 84              # square side of the resized grey frame
    net: str = "a3c"                   # "a3c" (16-32-256) or "nature" (32-64-64-512)
    vbn: bool = True                   # virtual batch normalisation after every hidden layer
    ref_batch_size: int = 128          # observations in the VBN reference batch
    ref_batch_prob: float = 0.05       # chance that a random-play observation joins the reference batch
    vbn_eps: float = 1e-3              # added to the reference variance (TF batch_norm's default)
    bc: bool = False                   # behaviour characterisation = the console RAM at episode end

    @property
    def max_episode_steps(self) -> int:
        """Agent steps an episode can last: the frame cap divided by the frame skip, rounded up."""
        return -(-self.frame_cap // self.frame_skip)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "<config>") -> "AtariSettings":
        """Validate a plain dict (a TOML table) and build the settings; errors name ``where: atari.<key>``."""
        d = dict(d or {})
        known = {f.name: f for f in fields(cls)}
        for k in d:
            if k not in known:
                import difflib
                close = difflib.get_close_matches(k, list(known), n=1)
                hint = f" (did you mean atari.{close[0]}?)" if close else ""
                raise ConfigError(f"{where}: atari.{k}: unknown key{hint}; known keys: {', '.join(known)}")
        for k, v in d.items():
            want = type(getattr(cls, k))
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                d[k] = v = float(v)
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ConfigError(f"{where}: atari.{k} = {v!r}: expected {want.__name__}")
        s = cls(**d)
        s._check(where)
        return s

    def _check(self, where: str) -> None:
        def bad(key, why):
            raise ConfigError(f"{where}: atari.{key} = {getattr(self, key)!r}: {why}")

        if self.frame_skip < 1:
            bad("frame_skip", "must be >= 1 (1 = every frame; the papers use 4)")
        if self.noop_max < 0:
            bad("noop_max", "must be >= 0 (0 = no no-op starts; DeepMind used 30)")
        if not 0.0 <= self.sticky_actions < 1.0:
            bad("sticky_actions", "must be in [0, 1) (0 = deterministic ALE, 0.25 = Machado et al.)")
        if self.frame_cap < self.frame_skip:
            bad("frame_cap", f"must be >= atari.frame_skip ({self.frame_skip}); e.g. 108000 (30 minutes)")
        if self.frame_stack < 1:
            bad("frame_stack", "must be >= 1 (DeepMind stacked 4)")
        if self.screen_size < 36:
            bad("screen_size", "must be >= 36 (the Nature net's three convolutions need it; 84 is standard)")
        if self.net not in NETS:
            bad("net", f"must be one of {', '.join(NETS)}")
        if self.vbn and self.ref_batch_size < 2:
            bad("ref_batch_size", "must be >= 2 when atari.vbn is on (a variance needs two observations; "
                                  "Salimans et al. used 128)")
        if not 0.0 < self.ref_batch_prob <= 1.0:
            bad("ref_batch_prob", "must be in (0, 1]")
        if not self.vbn_eps > 0.0:
            bad("vbn_eps", "must be > 0")
