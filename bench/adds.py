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
"""
import argparse
import os
import statistics
import sys

from compare import run_json


def kernels(binary, model, args):
    """One `dagger bench` run of `model`: {kernel name: ms per step}."""
    command = [binary, "bench", model, "--batch", str(args.batch), "--threads", str(args.threads), "--steps",
               str(args.steps), "--repeats", str(args.repeats), "--warmup", "1", "--json"]
    report = run_json(command, dict(os.environ, DAGGER_PYTHON="/nonexistent"))  # no PyTorch yardstick
    return {k["name"]: k["ms_per_step"] for k in report["models"][0]["kernels"]}


def quartiles(values):
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return q[0], q[2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("with_part", metavar="WITH", help="the model with the part (e.g. cnn3)")
    parser.add_argument("without_part", metavar="WITHOUT", help="the same model without it")
    parser.add_argument("--binaries", default="build/dagger", help="dagger binaries, comma-separated")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-kernel", action="store_true", help="print each kernel's median time in both models")
    args = parser.parse_args()
    binaries = [b for b in args.binaries.split(",") if b]
    for binary in binaries:
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            parser.exit(2, f"adds.py: --binaries: '{binary}' is not an executable file\n")
    for name in ("batch", "threads", "rounds", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.exit(2, f"adds.py: --{name} must be at least 1, not {getattr(args, name)}\n")

    models = (args.with_part, args.without_part)
    runs = {(b, m): [] for b in binaries for m in models}
    for r in range(args.rounds):
        for binary in binaries:
            for model in models if r % 2 == 0 else reversed(models):
                runs[(binary, model)].append(kernels(binary, model, args))
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)

    for binary in binaries:
        with_totals = [sum(k.values()) for k in runs[(binary, models[0])]]
        without_totals = [sum(k.values()) for k in runs[(binary, models[1])]]
        added = [w - o for w, o in zip(with_totals, without_totals)]
        shares = [100 * a / w for a, w in zip(added, with_totals)]
        low, high = quartiles(shares)
        print(f"{binary}: {models[0]} kernels {statistics.median(with_totals):.3f} ms per step, {models[1]} "
              f"{statistics.median(without_totals):.3f} ms; the part adds {statistics.median(added):.3f} ms, "
              f"{statistics.median(shares):.1f}% of {models[0]}'s kernels' time (rounds' interquartile "
              f"{low:.1f}-{high:.1f}%, {args.rounds} rounds)")
        if args.per_kernel:
            for model in models:
                print(f"  {model}:")
                medians = {name: statistics.median(run.get(name, 0.0) for run in runs[(binary, model)])
                           for name in runs[(binary, model)][0]}
                for name, ms in sorted(medians.items(), key=lambda item: -item[1]):
                    if ms >= 0.01:
                        print(f"    {name[:64]:64s} {ms:.3f} ms")


if __name__ == "__main__":
    main()
