"""The ``esmpi`` command (also ``python -m esmpi.analyze``): offline analysis of runs.

    esmpi info   RUN                                   summary of a run or checkpoint
    esmpi plot   RUN [RUN ...] -o curves.png           learning curves (+ time split)
    esmpi export RUN --csv history.csv                 the history table as CSV
    esmpi eval   RUN --episodes N                      evaluate the saved policy (mpiexec: spread over ranks)
    esmpi video  RUN -o walk.gif                       render the policy headless (MuJoCo: EGL; Atari: ALE screen)
    esmpi robustness RUN [RUN ...] [-k K] [-o fig.png] returns of K perturbed policies (mpiexec: spread over ranks)

RUN is a run directory (its newest periodic checkpoint, latest.h5) or a checkpoint .h5 file.
Training itself is ``mpiexec -n N python -m esmpi.run``. The logic lives in ``esmpi.analyze``;
this module only parses arguments, prints and maps errors to exit codes (0 ok, 2 bad input or
rendering impossible, 1 a crash).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from .errors import EsmpiError


def build_parser(prog: str = "esmpi") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                 epilog="RUN: a run directory (uses RUN/latest.h5) or a checkpoint .h5 file. "
                                        "See docs/analysis.md.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def run_arg(p, nargs=None):
        p.add_argument("run", nargs=nargs, metavar="RUN", help="run directory or checkpoint .h5 file")

    def allow_arg(p):
        p.add_argument("--allow-import", action="append", default=[], metavar="MODULE",
                       help="let the checkpoint's env id 'MODULE:Env-vN' import MODULE (a file never decides by "
                            "itself what code runs); repeatable")

    def ck_arg(p):
        p.add_argument("--checkpoint", metavar="PATH",
                       help="checkpoint to use instead of RUN's newest: a path, or a name in RUN/checkpoints "
                            "('best', 'gen_000010')")

    p = sub.add_parser("info", help="readable summary of a run: env, config, progress, returns, timing, files")
    run_arg(p)
    ck_arg(p)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = sub.add_parser("plot", help="learning curves of one or more runs (seeds of one config: median + IQR)")
    run_arg(p, "+")
    p.add_argument("-o", "--out", required=True, help="image file to write (.png, .pdf, .svg)")
    p.add_argument("--x", choices=["timesteps", "time", "generation"],
                   help="only this x axis (default: all three panels)")
    p.add_argument("--title", help="figure title (default: env ids and number of runs)")
    p.add_argument("--dpi", type=int, default=100, help="resolution of raster output (default: 100)")

    p = sub.add_parser("export", help="write the history table as CSV")
    run_arg(p)
    ck_arg(p)
    p.add_argument("--csv", default="-", metavar="PATH", help="output file (default: standard output)")

    p = sub.add_parser("eval", help="evaluate the saved policy (no action noise, saved observation normalisation)")
    run_arg(p)
    ck_arg(p)
    p.add_argument("--episodes", "-n", type=int, help="number of episodes (default: 10; --training: the run's "
                                                      "evaluation episodes per generation)")
    p.add_argument("--seed", type=int, default=0, help="episode e resets with a seed derived from (seed, e) (default: 0)")
    p.add_argument("--training", action="store_true",
                   help="replay the trainer's own evaluation episodes of this state (run seed, generation): with "
                        "--checkpoint best the mean must equal the history's EvalEpRewMean")
    p.add_argument("--json", action="store_true", help="print the result (with every episode) as JSON")
    allow_arg(p)

    p = sub.add_parser("video", help="render the policy headless to .gif or .mp4 (MuJoCo: EGL by default; Atari: the ALE screen)")
    run_arg(p)
    ck_arg(p)
    p.add_argument("-o", "--out", required=True, help="video file: .gif (Pillow) or .mp4 (needs imageio-ffmpeg)")
    p.add_argument("--frames", type=int, default=300, help="number of frames (default: 300); episodes follow one another")
    p.add_argument("--width", type=int, help="frame width in pixels (default: 480; Atari: 320, the screen doubled)")
    p.add_argument("--height", type=int, help="frame height in pixels (default: 360; Atari: 420)")
    p.add_argument("--fps", type=float, help="frames per second (default: the env's real-time rate, at most 50; "
                                             "Atari: 60 / frame skip, one frame per agent step)")
    p.add_argument("--seed", type=int, default=0, help="episode seeds as for eval (default: 0)")
    allow_arg(p)

    p = sub.add_parser("robustness", help="returns of K perturbations theta + s * eps_k of each saved policy, "
                                          "relative to the unperturbed return (docs/robustness.md)")
    run_arg(p, "+")
    allow_arg(p)
    p.add_argument("-k", type=int, default=1000, help="perturbations per scale (default: 1000)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sigma", type=float, nargs="+", metavar="S", help="absolute perturbation scales")
    g.add_argument("--times", type=float, nargs="+", metavar="M", default=[1.0, 2.0],
                   help="scales as multiples of each run's training sigma (default: 1 2)")
    p.add_argument("--episodes", "-n", type=int, default=10,
                   help="unperturbed episodes; their mean return is the reference R0 (default: 10)")
    p.add_argument("--seed", type=int, default=0,
                   help="analysis seed: perturbation offsets and episode resets (default: 0)")
    p.add_argument("--json", action="store_true", help="print every result (with all returns) as JSON")
    p.add_argument("-o", "--out", help="also draw the runs side by side into this image (.png, .pdf, .svg)")
    p.add_argument("--title", help="figure title")
    return ap


def _info(args) -> int:
    from . import analyze

    s = analyze.summarize(analyze.load_run(args.run, args.checkpoint))
    print(json.dumps(s, indent=2, default=str) if args.json else analyze.format_info(s))
    return 0


def _plot(args) -> int:
    from . import analyze

    runs = [analyze.load_run(r, history_only=True) for r in args.run]
    fig = analyze.plot_runs(runs, x=args.x, title=args.title)
    out = analyze.save_figure(fig, args.out, dpi=args.dpi)
    groups = analyze.group_runs(runs)
    print(f"wrote {out}: {len(runs)} run(s) in {len(groups)} group(s)")
    return 0


def _export(args) -> int:
    from . import analyze

    rd = analyze.load_run(args.run, args.checkpoint)
    if args.csv == "-":
        analyze.export_csv(rd.history, sys.stdout)
    else:
        n = analyze.export_csv(rd.history, args.csv)
        print(f"wrote {args.csv}: {n} generations x {len(rd.history[0]) if rd.history else 0} columns "
              f"from {rd.checkpoint}")
    return 0


def _collective(name: str, work) -> int:
    """Run ``work(comm) -> exit code`` on every rank of an MPI analysis command (eval, robustness). An
    ``EsmpiError`` (the ranks read the same files, so all raise it) is printed once, by rank 0, and
    becomes the exit code; a crash is reported by the rank that had it and aborts the others, so a
    failing rank never leaves the rest waiting in a collective."""
    from .comm import make_comm

    comm = make_comm()
    try:
        try:
            return work(comm)
        except EsmpiError as e:
            if comm.rank == 0:
                print(f"esmpi {name}: error: {e}", file=sys.stderr, flush=True)
            return e.exit_code
    except BrokenPipeError:   # `esmpi ... | head`: main() handles it
        raise
    except BaseException:
        sys.stderr.write(f"[rank {comm.rank}] esmpi {name} crashed:\n{traceback.format_exc()}")
        sys.stderr.flush()
        if comm.size > 1:
            comm.abort(1)
        raise
    finally:
        comm.free()


def _eval(args) -> int:
    def work(comm) -> int:
        from . import analyze, envs, replay

        envs.restrict_imports(args.allow_import)
        rd = analyze.load_run(args.run, args.checkpoint)
        n = args.episodes or (replay.training_eval_episodes(rd) if args.training else 10)
        res = replay.evaluate(rd, n, args.seed, comm, training=args.training)
        if comm.rank == 0:
            print(json.dumps(res, indent=2) if args.json else replay.format_eval(res), flush=True)
        return 0

    return _collective("eval", work)


def _video(args) -> int:
    from . import analyze, envs, replay

    envs.restrict_imports(args.allow_import)
    replay.prepare_render_backend()  # before anything imports mujoco / PyOpenGL
    rd = analyze.load_run(args.run, args.checkpoint)
    r = replay.render_video(rd, args.out, frames=args.frames, width=args.width, height=args.height,
                             fps=args.fps, seed=args.seed, allow_import=args.allow_import)
    done = f"; returns of completed episodes: {', '.join(f'{x:.1f}' for x in r['completed_returns'])}" \
        if r["completed_returns"] else ""
    print(f"wrote {r['path']}: {r['frames']} frames at {r['fps']:.1f} fps (every {r['stride']} env step(s), "
          f"{'MUJOCO_GL=' if r['backend'] in ('egl', 'osmesa', 'glfw') else ''}{r['backend']}){done}")
    return 0


def _robustness(args) -> int:
    from . import envs, robustness

    envs.restrict_imports(args.allow_import)

    if args.k < 1:
        raise EsmpiError(f"-k {args.k}: need at least 1 perturbation")
    scales = args.sigma if args.sigma else args.times
    if any(not (s > 0 and s < float("inf")) for s in scales):
        raise EsmpiError(f"{'--sigma' if args.sigma else '--times'} {' '.join(map(str, scales))}: "
                         "perturbation scales must be finite and > 0")
    if args.episodes < 1:
        raise EsmpiError(f"--episodes {args.episodes}: need at least 1 unperturbed episode")
    if args.out:
        from pathlib import Path

        if not Path(args.out).parent.is_dir():
            raise EsmpiError(f"-o {args.out}: directory {Path(args.out).parent} does not exist")
    from . import analyze

    runs = [analyze.load_run(r) for r in args.run]    # every file is checked before any episode runs

    def work(comm) -> int:
        tables = {}    # noise tables by (size, seed): built once, collectively, for runs that share one
        results = [robustness.probe(rd, args.k, args.sigma, args.times, args.episodes, args.seed, comm, tables)
                   for rd in runs]
        if comm.rank == 0:
            print(json.dumps(results, indent=1) if args.json else robustness.format_table(results), flush=True)
            if args.out:
                out = analyze.save_figure(robustness.plot_robustness(results, args.title), args.out)
                print(f"wrote {out}", file=sys.stderr if args.json else sys.stdout, flush=True)
        return 0

    return _collective("robustness", work)


COMMANDS = {"info": _info, "plot": _plot, "export": _export, "eval": _eval, "video": _video,
            "robustness": _robustness}


def main(argv=None, prog: str = "esmpi") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except EsmpiError as e:
        print(f"esmpi {args.command}: error: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    except BrokenPipeError:  # e.g. `esmpi export RUN | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
