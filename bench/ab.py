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
"""
import argparse
import os
import re
import statistics
import subprocess

from compare import run_json


def kernels_from(binary, extra, args):
    """The names of the kernels of `binary`'s training plan whose first node comes from
    args.source (optimizer updates excepted), from `dagger ir --stage fused`."""
    command = [binary, "ir", args.model, "--stage", "fused", *extra.split()]
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
    return names


def bench(binary, extra, args, sources=None):
    command = [binary, "bench", args.model, "--batch", str(args.batch), "--threads", str(args.threads),
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--warmup", "1", "--json"]
    report = run_json(command + extra.split(), os.environ)
    model = report["models"][0]
    kernels = model["kernels"]
    picked = {k["name"]: k for k in kernels
              if (sources is not None and k["name"] in sources) or (args.match and re.search(args.match, k["name"]))}
    matched = sum(k["ms_per_step"] for k in picked.values())
    share = matched / max(sum(k["ms_per_step"] for k in kernels), 1e-9)
    return (model["train"]["images_per_sec_median"], model["train"]["step_ms_median"], matched, share, picked,
            report["machine"]["sgemm"].get("peak_gflops"), report["machine"].get("load_average"),
            report["machine"].get("build", {}))


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("model")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--match", default="", help="sum the kernels whose name this regular expression finds")
    parser.add_argument("--source", default="", help="sum the kernels whose first node comes from FILE:LINE")
    parser.add_argument("--old-args", default="", help="more `dagger bench` options for the old side")
    parser.add_argument("--new-args", default="", help="more `dagger bench` options for the new side")
    parser.add_argument("--per-kernel", action="store_true", help="print each matched kernel's medians")
    args = parser.parse_args()
    for side in ("old", "new"):
        binary = getattr(args, side)
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            parser.exit(2, f"ab.py: {side.upper()} '{binary}' is not an executable file\n")
    sources = {side: kernels_from(getattr(args, side), getattr(args, side + "_args"), args) if args.source else None
               for side in ("old", "new")}
    label = " or ".join(what for what in (args.source, args.match) if what)  # what the sums are of

    results = {"old": [], "new": []}
    for r in range(args.rounds):
        for side in ("old", "new"):
            figures = bench(getattr(args, side), getattr(args, side + "_args"), args, sources[side])
            results[side].append(figures)
            if r == 0 and side == "new":
                check_two_builds(args, results["old"][0][7], figures[7])
            print(f"round {r + 1} {side}: {figures[0]:.0f} img/s, step {figures[1]:.1f} ms"
                  + (f", {label} {figures[2]:.2f} ms ({100 * figures[3]:.1f}%)" if label else ""),
                  flush=True)
    for side in ("old", "new"):
        runs = results[side]
        line = (f"median {side}: {statistics.median(f[0] for f in runs):.0f} img/s, "
                f"step {statistics.median(f[1] for f in runs):.1f} ms")
        if label:
            line += (f", {label} {statistics.median(f[2] for f in runs):.2f} ms"
                     f" ({100 * statistics.median(f[3] for f in runs):.1f}% of the kernels' time)")
        print(line)

    if args.per_kernel:
        peaks = [f[5] for side in results.values() for f in side if f[5]]
        loads = [f[6] for side in results.values() for f in side if f[6] is not None]
        if peaks:
            print(f"JIT SGEMM figure of the runs (median): {statistics.median(peaks):.1f} GFLOP/s"
                  + (f"; load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""))
        # By name: a kernel of one plan only (fusion changed, --source) shows on its side alone.
        names = {name: k["key"] for side in ("old", "new") for f in results[side] for name, k in f[4].items()}
        for name, key in sorted(names.items()):
            cells = []
            for side in ("old", "new"):
                runs = [f[4][name] for f in results[side] if name in f[4]]
                cells.append(f"{side} {statistics.median(k['ms_per_step'] for k in runs):.3f} ms "
                             f"{statistics.median(k['gflops'] for k in runs):.0f} GFLOP/s" if runs else f"{side} -")
            print(f"  {name} {key}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
