#!/usr/bin/env python3
"""The kernel time a part of a model adds: a model with it and the same model without it, timed
alternately by `dagger bench --json`, for one or more dagger binaries. Issue 17's batch-norm bar
is read this way, as the time cnn3's batch norms add to the same network without them:

  bench/adds.py cnn3 'cnn(3,nobn,0.5,0.25,256)' --binaries OLD_BIN,build/dagger --rounds 12

Each round runs, for every binary, the two models one after the other, the order reversed every
other round, so that a burst of load falls on both alike. This host's speed drifts by a fourth
within seconds, so a round's own share is noise; read the medians over many rounds (12 is a
minimum). Per binary it prints the medians of the kernels' totals per step, of the per-round
differences (what the part adds) and of their share of the first model's kernels' time, with the
rounds' interquartile range; with --per-kernel, every kernel's median time in each model (the
two plans' kernels are not paired: fusion names them differently).

With --relative-to REGEX, each run is also read against its own kernels matching REGEX, kernels
both models run as the same code on the same shapes (for cnn3, its convolutions' five backward
products, 'conv2d_backward'): a run's total is scaled by the median of those kernels' sum over
all runs of the binary, both models, divided by its own sum. A spell that slows a whole run
alike then divides out, and what is left is the part's own time and the noise within a run. It
assumes those kernels take the same time in both models; a change the part makes to them
(through the caches it leaves) is counted by the plain figures, not these. --save keeps every
run's kernel times, and --load reads them back in place of running binaries:

  bench/adds.py cnn3 'cnn(3,nobn,0.5,0.25,256)' --rounds 12 --relative-to conv2d_backward --save runs.json
  bench/adds.py --load runs.json --relative-to conv2d_backward --per-kernel
"""
import argparse
import json
import os
import statistics
import sys

from compare import relative_pattern, run_json, save_json


def kernels(binary, model, args):
    """One `dagger bench` run of `model`: {kernel name: ms per step}."""
    command = [binary, "bench", model, "--batch", str(args.batch), "--threads", str(args.threads), "--steps",
               str(args.steps), "--repeats", str(args.repeats), "--warmup", "1", "--json"]
    report = run_json(command, dict(os.environ, DAGGER_PYTHON="/nonexistent"))  # no PyTorch yardstick
    return {k["name"]: k["ms_per_step"] for k in report["models"][0]["kernels"]}


def quartiles(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("with_part", metavar="WITH", nargs="?", help="the model with the part (e.g. cnn3)")
    parser.add_argument("without_part", metavar="WITHOUT", nargs="?", help="the same model without it")
    parser.add_argument("--binaries", default="build/dagger", help="dagger binaries, comma-separated")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-kernel", action="store_true", help="print each kernel's median time in both models")
    parser.add_argument("--relative-to", metavar="REGEX", help="also read each run against its kernels matching REGEX")
    parser.add_argument("--save", metavar="FILE", help="write every run's kernel times to FILE (JSON)")
    parser.add_argument("--load", metavar="FILE", help="read the runs from a file --save wrote instead of running")
    args = parser.parse_args()
    args.pattern = relative_pattern(parser, args)
    if args.load:
        if args.with_part or args.without_part or args.save:
            parser.exit(2, "adds.py: --load reads saved runs: give no models and no --save\n")
        return args
    if not (args.with_part and args.without_part):
        parser.exit(2, "adds.py: give two models, WITH and WITHOUT (or --load FILE)\n")
    args.binary_list = [b for b in args.binaries.split(",") if b]
    for binary in args.binary_list:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            parser.exit(2, f"adds.py: --binaries: '{binary}' is not an executable file\n")
    for name in ("batch", "threads", "rounds", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.exit(2, f"adds.py: --{name} must be at least 1, not {getattr(args, name)}\n")
    return args


def run_rounds(args):
    """{"models": [WITH, WITHOUT], "binaries": [...], "runs": {binary: {model: [{kernel: ms}]}}}."""
    models = (args.with_part, args.without_part)
    runs = {b: {m: [] for m in models} for b in args.binary_list}
    for r in range(args.rounds):
        for binary in args.binary_list:
            for model in models if r % 2 == 0 else reversed(models):
                runs[binary][model].append(kernels(binary, model, args))
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    return {"models": list(models), "binaries": args.binary_list, "runs": runs}


def load_rounds(path):
    """A file --save wrote; one line and exit 1 for anything else."""
    try:
        with open(path) as f:
            saved = json.load(f)
        models, binaries, runs = saved["models"], saved["binaries"], saved["runs"]
        counts = {len(runs[b][m]) for b in binaries for m in models}
        if len(models) != 2 or not binaries or len(counts) != 1 or 0 in counts:
            raise ValueError("two models and the same number of runs of each, at least one")
        for b in binaries:
            for m in models:
                for run in runs[b][m]:
                    if not run or not all(isinstance(ms, (int, float)) for ms in run.values()):
                        raise ValueError(f"a run of {m} by {b} holds no kernel times")
    except OSError as e:
        sys.exit(f"adds.py: {path}: {e.strerror}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        sys.exit(f"adds.py: {path}: not a file that bench/adds.py --save wrote ({type(e).__name__}: {e})")
    return saved


def summary(label, with_totals, without_totals, models):
    added = [w - o for w, o in zip(with_totals, without_totals)]
    shares = [100 * a / w for a, w in zip(added, with_totals)]
    low, high = quartiles(shares)
    return (f"{label}: {models[0]} kernels {statistics.median(with_totals):.3f} ms per step, {models[1]} "
            f"{statistics.median(without_totals):.3f} ms; the part adds {statistics.median(added):.3f} ms, "
            f"{statistics.median(shares):.1f}% of {models[0]}'s kernels' time (rounds' interquartile "
            f"{low:.1f}-{high:.1f}%, {len(shares)} rounds)")


def relative_totals(runs, pattern, binary):
    """Each run's total scaled by the median over all of the binary's runs of its kernels
    matching `pattern` over this run's own; one line and exit 1 where a run has none of them."""
    references = {m: [sum(ms for name, ms in run.items() if pattern.search(name)) for run in model_runs]
                  for m, model_runs in runs.items()}
    if any(r <= 0 for refs in references.values() for r in refs):
        sys.exit(f"adds.py: --relative-to: a run of {binary} has no kernel matching '{pattern.pattern}'")
    middle = statistics.median(r for refs in references.values() for r in refs)
    return {m: [sum(run.values()) * middle / r for run, r in zip(model_runs, references[m])]
            for m, model_runs in runs.items()}


def main():
    args = parse_arguments()
    saved = load_rounds(args.load) if args.load else run_rounds(args)
    if args.save:  # first, so that no reading below loses the runs
        save_json(args.save, saved)
    models = saved["models"]
    for binary in saved["binaries"]:
        runs = saved["runs"][binary]
        scaled = relative_totals(runs, args.pattern, binary) if args.relative_to is not None else None
        print(summary(binary, [sum(k.values()) for k in runs[models[0]]],
                      [sum(k.values()) for k in runs[models[1]]], models))
        if scaled:
            print(summary(f"{binary}, relative to '{args.relative_to}'", scaled[models[0]], scaled[models[1]], models))
        if args.per_kernel:
            for model in models:
                print(f"  {model}:")
                medians = {name: statistics.median(run.get(name, 0.0) for run in runs[model])
                           for name in runs[model][0]}
                for name, ms in sorted(medians.items(), key=lambda item: -item[1]):
                    if ms >= 0.01:
                        print(f"    {name[:64]:64s} {ms:.3f} ms")


if __name__ == "__main__":
    main()
