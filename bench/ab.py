#!/usr/bin/env python3
"""Two dagger binaries timed alternately on one model: for each round, `dagger bench --json`
of the old binary, then of the new one, and per run the training images/s, the step time and
the time per step of the kernels whose name --match finds (a regular expression, e.g.
backward_filter, or 'batchnorm|channel_' for batch norm) and their share of the kernels' time.

Alternating rounds put a burst of load on the machine on both sides alike; compare the medians
printed at the end, not single runs. A change that should keep the bits (a loop order, a
packing) is checked separately, e.g. by training both binaries for an epoch with --out and
comparing the checkpoints byte for byte.

  bench/ab.py OLD_BIN build/dagger rescnn --batch 256 --threads 2 --rounds 3 --match backward_filter

A copy of an older build's binary still loads the library its RUNPATH names, which is the build
folder it came from: give it its own with a wrapper (`LD_LIBRARY_PATH=OLD_LIB exec OLD_BIN "$@"`).
ab.py stops when both sides ran the same libdagger file with the same options (`dagger bench
--json` says which file and which commit each side ran).

The two sides may be one binary under different options (--old-args, --new-args), and
--per-kernel prints each matched kernel's median time and GFLOP/s (as `dagger bench` counts its
FLOPs) and the JIT's SGEMM figure of the runs:

  bench/ab.py build/dagger build/dagger cnn3 --old-args=--conv-algo=winograd \
      --new-args=--conv-algo=winograd4 --match 'conv2d(_backward_data)?_' --per-kernel

Kernel names change when fusion changes, so two plans' kernels of one layer are better picked by
where they come from: --source FILE:LINE sums the kernels whose first node `dagger ir MODEL
--stage fused` attributes to that line of the model's source, optimizer updates excepted, each
binary's plan read from that binary (cnn3's batch norm is models/zoo.cpp:55):

  bench/ab.py OLD_BIN build/dagger cnn3 --threads 1 --steps 5 --source models/zoo.cpp:55

--plan eval reads the inference plan's kernels and images/s instead of the training step's.
With --relative-to REGEX each run's picked kernels are also read against its own kernels matching
REGEX, kernels the change leaves alone (e.g. 'conv2d_backward' for a change to the forwards): a
run's times are scaled by the median of those kernels' sum over every run of both sides, divided
by that run's own sum, so a spell of the host that slows a whole run divides out (these guests
drift by 10-20% between runs, more than many changes are worth). --save keeps every run's report
and --load reads them back in place of running the binaries (with the plan and kernels they
picked; another --relative-to may be given):

  bench/ab.py OLD_BIN build/dagger rescnn --plan eval --rounds 7 --match conv2d --relative-to \
      'k(4[01]|5[78]|69|70|8[67])_conv2d' --per-kernel --save ab.json
  bench/ab.py --load ab.json --relative-to 'k(4[01]|5[78]|69|70|8[67])_conv2d' --per-kernel
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

from compare import relative_pattern, run_json, save_json


def kernels_from(binary, extra, args):
    """The names of the kernels of `binary`'s plan (args.plan) whose first node comes from
    args.source (optimizer updates excepted), from `dagger ir --stage fused`."""
    command = [binary, "ir", args.model, "--stage", "fused", "--plan", args.plan, *extra.split()]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # e.g. an --old-args option that `dagger bench` takes and `dagger ir` does not
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise SystemExit(f"ab.py: --source needs `{' '.join(command)}`, which failed: {reason}")
    listing = done.stdout
    names, kernel = set(), None
    for line in listing.splitlines():
        if line.startswith("kernel "):
            kernel = line.split()[1]
        elif kernel and line.startswith("  %"):
            if f"# {args.source} " in line + " " and " in optimizer" not in line:
                names.add(kernel)
            kernel = None
    if not names:
        raise SystemExit(f"--source {args.source}: no kernel of {binary}'s {args.model} plan comes from that line")
    return sorted(names)


def bench(binary, extra, args):
    """One `dagger bench --json` run: its report."""
    command = [binary, "bench", args.model, "--batch", str(args.batch), "--threads", str(args.threads),
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--warmup", "1", "--json"]
    return run_json(command + extra.split(), os.environ)


def figures(report, plan, match, sources, reference):
    """What one run gives: images/s and step time of the plan, the kernels picked (by `match` or
    by name in `sources`) and their sum and share, the sum of the kernels `reference` finds."""
    model = report["models"][0]
    rate = model["train" if plan == "train" else "inference"]
    kernels = model["kernels" if plan == "train" else "inference_kernels"]
    picked = {k["name"]: k for k in kernels
              if (sources is not None and k["name"] in sources) or (match and re.search(match, k["name"]))}
    matched = sum(k["ms_per_step"] for k in picked.values())
    return {"images": rate["images_per_sec_median"], "step": rate["step_ms_median"], "matched": matched,
            "share": matched / max(sum(k["ms_per_step"] for k in kernels), 1e-9), "picked": picked,
            "reference": sum(k["ms_per_step"] for k in kernels if reference and reference.search(k["name"])),
            "sgemm": report["machine"]["sgemm"].get("peak_gflops"), "load": report["machine"].get("load_average"),
            "build": report["machine"].get("build", {})}


def check_two_builds(args, old, new):
    """Exits when both sides ran one libdagger with the same options: a binary finds its library
    through LD_LIBRARY_PATH first and its RUNPATH (the build folder it was linked in) second, so a
    copy of an older build/dagger run without its own LD_LIBRARY_PATH loads build/'s new library,
    and the comparison measures one build twice. (Binaries older than the report's "build" field
    are not checked.)"""
    if not old.get("library") or old.get("library") != new.get("library") or args.old_args != args.new_args:
        return
    raise SystemExit(f"ab.py: {args.old} and {args.new} both ran {old['library']} (built from {old.get('commit')}): "
                     "give the old binary its own library (a wrapper script that sets LD_LIBRARY_PATH) "
                     "or compare options with --old-args/--new-args")


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", nargs="?")
    parser.add_argument("new", nargs="?")
    parser.add_argument("model", nargs="?")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plan", choices=("train", "eval"),
                        help="whose kernels and images/s: the training step's or the inference plan's")
    parser.add_argument("--match", default="", help="sum the kernels whose name this regular expression finds")
    parser.add_argument("--source", default="", help="sum the kernels whose first node comes from FILE:LINE")
    parser.add_argument("--relative-to", metavar="REGEX", help="also read each run against its kernels matching REGEX")
    parser.add_argument("--old-args", default="", help="more `dagger bench` options for the old side")
    parser.add_argument("--new-args", default="", help="more `dagger bench` options for the new side")
    parser.add_argument("--per-kernel", action="store_true", help="print each matched kernel's medians")
    parser.add_argument("--save", metavar="FILE", help="write every run's report to FILE (JSON)")
    parser.add_argument("--load", metavar="FILE", help="read the runs from a file --save wrote instead of running")
    args = parser.parse_args()
    args.reference = relative_pattern(parser, args)
    if args.load:
        if args.old or args.save or args.plan or args.match or args.source:
            parser.exit(2, "ab.py: --load reads saved runs, with the plan and the kernels they picked: give no "
                           "binaries, model, --save, --plan, --match or --source\n")
        return args
    args.plan = args.plan or "train"
    if not args.model:
        parser.exit(2, "ab.py: give OLD and NEW binaries and a MODEL (or --load FILE)\n")
    for side in ("old", "new"):
        binary = getattr(args, side)
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            parser.exit(2, f"ab.py: {side.upper()} '{binary}' is not an executable file\n")
    return args


def load_runs(path):
    """A file --save wrote; one line and exit 1 for anything else."""
    try:
        with open(path) as f:
            saved = json.load(f)
        for side in ("old", "new"):
            if not saved["runs"][side] or not all(r["models"][0]["kernels"] for r in saved["runs"][side]):
                raise ValueError(f"no runs of the {side} side")
        if len(saved["runs"]["old"]) != len(saved["runs"]["new"]):
            raise ValueError("the two sides hold different numbers of runs")
        for key in ("plan", "match", "sources", "label"):
            if key not in saved:
                raise KeyError(key)
    except OSError as e:
        sys.exit(f"ab.py: {path}: {e.strerror}")
    except (ValueError, KeyError, TypeError, IndexError) as e:
        sys.exit(f"ab.py: {path}: not a file that bench/ab.py --save wrote ({type(e).__name__}: {e})")
    return saved


def main():
    args = parse_arguments()
    if args.load:
        saved = load_runs(args.load)
        plan, match, sources = saved["plan"], saved["match"], saved["sources"]
        label = saved["label"]
    else:
        plan, match = args.plan, args.match
        sources = {side: kernels_from(getattr(args, side), getattr(args, side + "_args"), args) if args.source
                   else None for side in ("old", "new")}
        label = " or ".join(what for what in (args.source, args.match) if what)  # what the sums are of
        saved = {"plan": plan, "match": match, "sources": sources, "label": label, "runs": {"old": [], "new": []}}
    results = {"old": [], "new": []}
    rounds = len(saved["runs"]["old"]) if args.load else args.rounds
    for r in range(rounds):
        for side in ("old", "new"):
            if not args.load:
                saved["runs"][side].append(bench(getattr(args, side), getattr(args, side + "_args"), args))
            figures_of_run = figures(saved["runs"][side][r], plan, match, sources[side], args.reference)
            results[side].append(figures_of_run)
            if r == 0 and side == "new" and not args.load:
                check_two_builds(args, results["old"][0]["build"], figures_of_run["build"])
            print(f"round {r + 1} {side}: {figures_of_run['images']:.0f} img/s, step {figures_of_run['step']:.1f} ms"
                  + (f", {label} {figures_of_run['matched']:.2f} ms ({100 * figures_of_run['share']:.1f}%)"
                     if label else ""), flush=True)
    if args.save:  # before the readings below, so that none of them loses the runs
        save_json(args.save, saved)

    # With --relative-to, each run's factor: the references' median over all runs / its own.
    scale = {side: [1.0] * len(runs) for side, runs in results.items()}
    if args.reference is not None:
        everything = [f["reference"] for runs in results.values() for f in runs]
        if min(everything) <= 0:
            sys.exit(f"ab.py: --relative-to: a run has no {plan} kernel matching '{args.relative_to}'")
        middle = statistics.median(everything)
        scale = {side: [middle / f["reference"] for f in runs] for side, runs in results.items()}
    what = "images/s" if plan == "train" else "inference images/s"
    for side in ("old", "new"):
        runs = results[side]
        line = (f"median {side}: {statistics.median(f['images'] for f in runs):.0f} {what}, "
                f"step {statistics.median(f['step'] for f in runs):.1f} ms")
        if label:
            line += (f", {label} {statistics.median(f['matched'] for f in runs):.2f} ms"
                     f" ({100 * statistics.median(f['share'] for f in runs):.1f}% of the kernels' time)")
            if args.reference is not None:
                line += (f"; relative to '{args.relative_to}' "
                         f"{statistics.median(f['matched'] * k for f, k in zip(runs, scale[side])):.3f} ms")
        print(line)

    if args.per_kernel:
        peaks = [f["sgemm"] for side in results.values() for f in side if f["sgemm"]]
        loads = [f["load"] for side in results.values() for f in side if f["load"] is not None]
        if peaks:
            print(f"JIT SGEMM figure of the runs (median): {statistics.median(peaks):.1f} GFLOP/s"
                  + (f"; load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""))
        # By name: a kernel of one plan only (fusion changed, --source) shows on its side alone.
        names = {name: k["key"] for side in ("old", "new") for f in results[side] for name, k in f["picked"].items()}
        for name, key in sorted(names.items()):
            cells = []
            for side in ("old", "new"):
                runs = [(f["picked"][name], k) for f, k in zip(results[side], scale[side]) if name in f["picked"]]
                if not runs:
                    cells.append(f"{side} -")
                    continue
                cell = (f"{side} {statistics.median(k['ms_per_step'] for k, _ in runs):.3f} ms "
                        f"{statistics.median(k['gflops'] for k, _ in runs):.0f} GFLOP/s")
                if args.reference is not None:
                    cell += f" (relative {statistics.median(k['ms_per_step'] * c for k, c in runs):.3f} ms)"
                cells.append(cell)
            print(f"  {name} {key}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
