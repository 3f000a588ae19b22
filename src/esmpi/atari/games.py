"""The only ale-py import: which games exist, their ROMs, and the raw ALE env of one game.

``make_game(settings)`` builds ale-py's ``AtariEnv`` with its own frame skip off (gymnasium's
``AtariPreprocessing`` does the skip and the max over the last two frames), greyscale screens (the
wrapper reads the screen itself; grey makes ale-py's per-frame copy 3x smaller than RGB), the
minimal action set, the configured sticky-action probability and the frame cap; then hands it to
``esmpi.envs.make_atari_env`` for the DeepMind wrappers.

Seeding: ``reset(seed=s)`` makes ale-py derive both its numpy generator (no-op count) and the
emulator's own RNG (sticky-action draws) from ``s`` and reload the ROM, so an episode is a pure
function of (theta, s): the same frames on every rank and at every world size.
"""

from __future__ import annotations

import difflib
import re

import numpy as np

from ..errors import EnvError

RAM_BYTES = 128   # the Atari 2600's RAM: the novelty-search behaviour characterisation


def _ale():
    try:
        import ale_py
        from ale_py import roms
    except ImportError as ex:  # pragma: no cover - ale-py is a dependency
        raise EnvError(f"atari: ale-py is not installed ({ex}); pip install ale-py") from None
    return ale_py, roms


def game_ids() -> list[str]:
    """Every ROM id the installed ale-py ships, sorted (snake_case: 'pong', 'space_invaders', ...)."""
    return sorted(_ale()[1].get_all_rom_ids())


def _snake(name: str) -> str:
    """'SpaceInvaders' / 'ALE/SpaceInvaders-v5' / 'space-invaders' -> 'space_invaders'."""
    name = re.sub(r"^ALE/|-v\d+$|NoFrameskip|Deterministic", "", name.strip())
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).replace("-", "_").lower()


def check_game(game: str, key: str = "atari.game") -> str:
    """The ROM id of ``game`` (CamelCase and gymnasium ids accepted), or an EnvError suggesting close ids;
    also an EnvError if the id is known but its ROM file is missing."""
    ale_py, roms = _ale()
    ids = game_ids()
    rom = _snake(game)
    if rom not in ids:
        close = difflib.get_close_matches(rom, ids, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise EnvError(f"{key} = {game!r}: unknown Atari game.{hint} "
                       "List them with: python -c \"import ale_py.roms as r; print(sorted(r.get_all_rom_ids()))\"")
    try:  # ale-py raises when the file is absent or its checksum is wrong, and honours ALE_ROMS_DIR
        path = roms.get_rom_path(rom)
        problem = None if path is not None and path.exists() else f"not found ({path})"
    except (OSError, ValueError) as ex:
        problem = f"{type(ex).__name__}: {ex}"
    if problem:
        raise EnvError(f"{key} = {game!r}: the ROM file for {rom!r} is missing or unreadable ({problem}); "
                       "reinstall ale-py (its wheel ships the ROMs) or unset/fix ALE_ROMS_DIR")
    return rom


def make_game(s):
    """The raw ale-py env for ``s: AtariSettings`` (frame skip 1, grey screen, minimal actions)."""
    ale_py, _ = _ale()
    rom = check_game(s.game)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)   # no banner per rank
    try:
        return ale_py.env.AtariEnv(rom, obs_type="grayscale", frameskip=1,
                                   repeat_action_probability=float(s.sticky_actions),
                                   full_action_space=False, max_num_frames_per_episode=int(s.frame_cap))
    except Exception as ex:
        raise EnvError(f"atari.game = {s.game!r}: ale-py could not load it: {type(ex).__name__}: {ex}") from None


def read_ram(game_env, out: np.ndarray) -> np.ndarray:
    """Copy the console RAM (128 uint8) of the raw env into ``out``; returns ``out``."""
    game_env.unwrapped.ale.getRAM(out)
    return out


def action_meanings(game_env) -> list[str]:
    return list(game_env.unwrapped.get_action_meanings())
