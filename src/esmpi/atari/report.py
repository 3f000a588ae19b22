"""The results tables of docs/atari.md, from the committed runs in results/atari/ (issue 15).

    python -m esmpi.atari.report results/atari --doc docs/atari.md     (make atari-results)

Reads each run directory's config.toml and progress.jsonl (the checkpoints are not committed) and
rewrites the part of the doc between ``<!-- atari-results:begin -->`` and ``<!-- atari-results:end -->``:
one row per run (budget in agent steps and emulator frames, the population's mean return at the first
and last generation and its best, the evaluation return, how many generations had every training
return equal (and the first such), and the summed generation wall time), then the VBN probe table in
results/atari/probe.md when it exists (``make atari-probe`` writes it from the local checkpoints).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

BEGIN, END = "<!-- atari-results:begin -->", "<!-- atari-results:end -->"


def _col(hist: list[dict], key: str) -> np.ndarray:
    return np.array([np.nan if h.get(key) is None else h[key] for h in hist], np.float64)


def _f(x: float, nd: int = 0) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:,.{nd}f}"


def run_row(d: Path) -> str:
    from ..runs import load_progress_run

    rd = load_progress_run(d)
    cfg, hist = rd.config, rd.history
    a = cfg.get("atari", {})
    strat = cfg.get("strategy", {}).get("name", "openai_es")
    if strat == "ga":
        strat = "random search" if cfg.get("ga", {}).get("mode") == "random_search" else "Deep GA"
        pop = f"pop {cfg['ga']['population']}"
    else:
        strat = {"openai_es": "OpenAI-ES"}.get(strat, strat)
        pop = f"{cfg.get('es', {}).get('pairs_per_generation')} pairs"
    mean, std, ev = _col(hist, "EpRewMean"), _col(hist, "EpRewStd"), _col(hist, "EvalEpRewMean")
    steps = int(hist[-1]["TimestepsSoFar"]) if hist else 0
    tied = np.flatnonzero(std == 0)                   # generations whose training returns were all equal
    flat = f"{tied.size} (first {int(tied[0]) + 1})" if tied.size else "0"
    ev_ok = ev[np.isfinite(ev)]
    cpu = float(np.nansum(_col(hist, "TimeElapsedThisIter")))
    return (f"| {d.name} | {strat} | {a.get('game')} | {a.get('net', 'a3c')} | {'on' if a.get('vbn', True) else 'off'} "
            f"| {pop} | {len(hist)} | {steps:,} | {steps * int(a.get('frame_skip', 4)) / 1e6:.2f}M "
            f"| {_f(mean[0] if hist else np.nan)} -> {_f(mean[-1] if hist else np.nan)} (best {_f(np.nanmax(mean) if hist else np.nan)}) "
            f"| {_f(ev_ok[0] if ev_ok.size else np.nan)} -> {_f(ev_ok[-1] if ev_ok.size else np.nan)} "
            f"(best {_f(ev_ok.max() if ev_ok.size else np.nan)}) | {flat} | {cpu / 60:.1f} |")


HEADER = ("| run | strategy | game | net | VBN | per generation | generations | agent steps | frames "
          "| population mean return: first -> last | eval return: first -> last | generations with all returns equal | wall min |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def tables(root: Path) -> str:
    runs = sorted(p for p in root.iterdir() if (p / "progress.jsonl").is_file() and (p / "config.toml").is_file())
    out = [HEADER] + [run_row(d) for d in runs]
    probe = root / "probe.md"
    if probe.is_file():
        out += ["", probe.read_text().strip()]
    return "\n".join(out)


def update_doc(doc: Path, text: str) -> None:
    s = doc.read_text()
    i, j = s.find(BEGIN), s.find(END)
    if i < 0 or j < i:
        from ..errors import EsmpiError
        raise EsmpiError(f"{doc}: no {BEGIN} ... {END} section to fill; add the two markers")
    doc.write_text(s[:i + len(BEGIN)] + "\n" + text + "\n" + s[j:])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m esmpi.atari.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="directory of run directories (results/atari)")
    ap.add_argument("--doc", type=Path, help="markdown file whose marked section is rewritten (else: print)")
    a = ap.parse_args(argv)
    text = tables(a.root)
    if a.doc:
        update_doc(a.doc, text)
        print(f"wrote the results section of {a.doc}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
