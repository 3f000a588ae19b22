"""Deceptive tasks for novelty search: a MuJoCo point mass in a U-trap, and the authors' Humanoid trap.

**PointMaze** (``esmpi/PointMaze-v0``): a sphere of radius 0.1 on two slide joints (x, y), no
gravity, joint damping, two motors (action in [-1, 1]^2, terminal speed 2 per second), in a
walled arena x in [-3, 5], y in [-3, 3]. The start (0, 0) lies inside a U-shaped pocket that
opens away from the goal: front wall at x = 1 (y in [-1.2, 1.2]), side walls at y = +-1.1 from
x = -1 to 1, mouth at x = -1. The goal (3, 0) lies behind the front wall. Per step the reward is
the decrease of the distance to the goal, so an episode's return is ``|start - goal| -
|final - goal|``: 3 at the goal, 0.8 pressed against the inside of the front wall (the trap, where
straight-line progress leads), and down to about -1.5 on the way out of the mouth and around the
side wall, so escaping means losing return first. Observation: (x, y, vx, vy); 100 steps of 0.1 s
(5 physics steps of 0.02 s). The behaviour characterisation is the final (x, y). Reset: the start
plus uniform noise in [-0.05, 0.05]^2.

**Humanoid trap** (``esmpi/HumanoidTrap-v5``): Gymnasium's humanoid.xml with the three walls of
the authors' ``extra/humanoid_maze.xml`` (front wall at x = 5.5, half-sizes 0.1 x 1.5 x 2; side
walls centred at (4, +-1.5), half-sizes 1.5 x 0.1 x 2) inserted into the world body; everything
else (reward, observation, termination) is Humanoid-v5's.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np

POINT_MAZE_ID = "esmpi/PointMaze-v0"
HUMANOID_TRAP_ID = "esmpi/HumanoidTrap-v5"
POINT_MAZE_STEPS = 100
GOAL = (3.0, 0.0)
GOAL_RADIUS = 0.5          # "reached the goal": final distance below this (docs/novelty.md)
TRAP_BOX = (-1.0, 0.9, -1.0, 1.0)  # x0, x1, y0, y1 of the inside of the U: "trapped" if the final (x, y) lies in it

_WALL = '<geom type="box" pos="{} {} 0" size="{} {} 0.2" rgba=".5 .5 .5 1"/>'

POINT_MAZE_XML = f"""<mujoco model="esmpi_point_maze">
  <option timestep="0.02" gravity="0 0 0" integrator="Euler"/>
  <worldbody>
    {_WALL.format(1.0, 0.0, 0.1, 1.2)}
    {_WALL.format(0.0, 1.1, 1.0, 0.1)}
    {_WALL.format(0.0, -1.1, 1.0, 0.1)}
    {_WALL.format(1.0, 3.1, 4.2, 0.1)}
    {_WALL.format(1.0, -3.1, 4.2, 0.1)}
    {_WALL.format(-3.1, 0.0, 0.1, 3.2)}
    {_WALL.format(5.1, 0.0, 0.1, 3.2)}
    <body name="point" pos="0 0 0">
      <joint name="x" type="slide" axis="1 0 0" damping="2"/>
      <joint name="y" type="slide" axis="0 1 0" damping="2"/>
      <geom type="sphere" size="0.1" mass="1" friction="0.1 0 0"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" gear="4" ctrlrange="-1 1" ctrllimited="true"/>
    <motor joint="y" gear="4" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


class PointMaze:
    """The point-maze physics without gymnasium (``envs.PointMazeEnv`` wraps it).

    kwargs: ``frame_skip`` (physics steps per env step), ``reset_noise`` (half-width of the start's
    uniform noise), ``goal`` ((x, y)).
    """

    def __init__(self, frame_skip: int = 5, reset_noise: float = 0.05, goal=GOAL):
        import mujoco

        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_string(POINT_MAZE_XML)
        self.data = mujoco.MjData(self.model)
        self.frame_skip, self.reset_noise = int(frame_skip), float(reset_noise)
        self.gx, self.gy = float(goal[0]), float(goal[1])
        self._dist = 0.0

    def _obs(self) -> np.ndarray:
        return np.concatenate((self.data.qpos, self.data.qvel))

    def _goal_distance(self) -> float:
        x, y = self.data.qpos
        return math.hypot(x - self.gx, y - self.gy)

    def reset(self, np_random: np.random.Generator) -> np.ndarray:
        self._mj.mj_resetData(self.model, self.data)
        self.data.qpos[:] = np_random.uniform(-self.reset_noise, self.reset_noise, 2)
        self._mj.mj_forward(self.model, self.data)
        self._dist = self._goal_distance()
        return self._obs()

    def step(self, action) -> tuple[np.ndarray, float]:
        self.data.ctrl[:] = action
        self._mj.mj_step(self.model, self.data, nstep=self.frame_skip)
        dist = self._goal_distance()
        reward, self._dist = self._dist - dist, dist
        return self._obs(), reward

    def behaviour(self) -> np.ndarray:
        """(2,) float64: the current (x, y) of the point."""
        return np.array(self.data.qpos[:2], np.float64)


def humanoid_trap_xml(humanoid_module_file: str) -> str:
    """Path of Gymnasium's humanoid.xml with the authors' three trap walls inserted before the torso.

    Written once per content into the temp directory (named by its hash, replaced atomically, so
    concurrent ranks never read a half-written file)."""
    src = Path(humanoid_module_file).parent / "assets" / "humanoid.xml"
    text = src.read_text()
    walls = ('<geom name="trap_front" type="box" pos="5.5 0 0" size=".1 1.5 2"/>\n'
             '        <geom name="trap_left" type="box" pos="4 1.5 0" size="1.5 .1 2"/>\n'
             '        <geom name="trap_right" type="box" pos="4 -1.5 0" size="1.5 .1 2"/>\n        ')
    marker = '<body name="torso"'
    if text.count(marker) != 1:
        raise RuntimeError(f"{src}: expected one '{marker}' element to insert the trap before")
    text = text.replace(marker, walls + marker)
    path = Path(tempfile.gettempdir()) / f"esmpi-humanoid-trap-{hashlib.sha256(text.encode()).hexdigest()[:16]}.xml"
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return str(path)
