"""Helpers for tests that submit jobs to the local Slurm cluster.

The cluster (scripts/slurm-local.sh) has no slurmdbd, so there is no
``sacct``: job results come from ``scontrol show job``, which keeps finished
jobs for MinJobAge (600 s).  Every helper takes ``env``, the environment from
the ``slurm_cluster`` fixture (it carries SLURM_CONF).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# States after which a job never runs again (REQUEUED, PENDING etc. are not).
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "PREEMPTED",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
    }
)


def run(cmd: Sequence[str], env: Mapping[str, str], **kw) -> subprocess.CompletedProcess:
    """Run a Slurm client command, capturing text output; raise on failure."""
    kw.setdefault("check", True)
    kw.setdefault("timeout", 30)
    return subprocess.run(list(cmd), env=dict(env), capture_output=True, text=True, **kw)


def submit(
    script: str | Path | None,
    *args: str,
    env: Mapping[str, str],
    opts: Sequence[str] = (),
    cwd: str | Path | None = None,
) -> str:
    """``sbatch --parsable [opts] [script [args...]]``; return the job id.

    ``args`` are passed to the script.  Use ``script=None`` with
    ``opts=[..., "--wrap", "cmd"]`` for a wrapped command (it runs under sh).
    """
    cmd = ["sbatch", "--parsable", *opts]
    if script is not None:
        cmd += [str(script), *args]
    elif args:
        raise ValueError("script arguments given without a script")
    p = run(cmd, env, check=False, cwd=cwd)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout.strip().split(";")[0]  # "id" or "id;cluster"


def job_info(job_id: str, env: Mapping[str, str]) -> str | None:
    """One-line ``scontrol show job -o`` record, or None if unknown."""
    p = run(["scontrol", "show", "job", "-o", str(job_id)], env, check=False)
    if p.returncode != 0 or "JobId=" not in p.stdout:
        return None
    return p.stdout.strip()


def _field(info: str, key: str) -> str | None:
    m = re.search(rf"(?:^|\s){key}=(\S*)", info)
    return m.group(1) if m else None


def job_state(job_id: str, env: Mapping[str, str]) -> str | None:
    """JobState (PENDING, RUNNING, COMPLETED, ...) or None if unknown."""
    info = job_info(job_id, env)
    return _field(info, "JobState") if info else None


def job_field(job_id: str, key: str, env: Mapping[str, str]) -> str | None:
    """Any ``Key=value`` field of ``scontrol show job`` (e.g. Restarts, Reason)."""
    info = job_info(job_id, env)
    return _field(info, key) if info else None


def _exit_code(info: str) -> int:
    """ExitCode=status:signal -> status, or -signal (as subprocess does)."""
    status, _, sig = (_field(info, "ExitCode") or "0:0").partition(":")
    return -int(sig) if sig and int(sig) else int(status)


def wait_job(
    job_id: str, timeout: float = 20.0, *, env: Mapping[str, str], poll: float = 0.2
) -> tuple[str, int]:
    """Poll until the job reaches a final state; return (state, exit_code).

    exit_code is the batch script's exit status, or -N if a signal N killed it.
    On timeout the job is cancelled and TimeoutError is raised.
    """
    deadline = time.monotonic() + timeout
    info = None
    while True:
        info = job_info(job_id, env)
        state = _field(info, "JobState") if info else None
        if state in FINAL_STATES:
            return state, _exit_code(info)
        if time.monotonic() > deadline:
            run(["scancel", str(job_id)], env, check=False)
            raise TimeoutError(f"job {job_id} not finished after {timeout}s: {info}")
        time.sleep(poll)


def release_requeued(job_id: str, env: Mapping[str, str], timeout: float = 15.0) -> None:
    """Start a requeued job now instead of after Slurm's 120 s requeue hold.

    ``scontrol update StartTime=now`` only works once the job is PENDING again
    (not while it is COMPLETING), and the relaunch must fall in a later
    wall-clock second than the requeue: slurmd compares credential times at
    1 s resolution and otherwise rejects the launch ("Job credential
    revoked"), which ends the job FAILED.  ``StartTime=now+1`` avoids that but
    then waits for the next periodic scheduler pass (up to ~30-60 s), so wait
    for the next second and use ``now``, which triggers scheduling at once.
    """
    wait_for(lambda: job_state(job_id, env) == "PENDING", timeout, f"job {job_id} PENDING")
    time.sleep(1.05 - time.time() % 1.0)  # into the next wall-clock second
    run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env)


def wait_for(pred, timeout: float, what: str, poll: float = 0.2):
    """Poll ``pred()`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
