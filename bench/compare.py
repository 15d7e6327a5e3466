#!/usr/bin/env python3
"""dagger beside PyTorch: runs `dagger bench --json` and bench/torch_bench.py on the same models,
batch sizes and thread counts, and prints a side-by-side table of training and inference
images/s and their ratio (dagger / PyTorch). The training steps use Adam, or on both sides the
optimizer `--optimizer` names (with `--nesterov`, momentum's look-ahead).

Each (batch, threads) configuration runs both programs `--rounds` times, alternating, and
reports the median over rounds of each program's own median (of `--repeats` runs of `--steps`
steps), so a burst of load on the machine hits both sides alike and is voted out. The last
column is the system's 1-minute load average as dagger bench saw it (median over rounds): above
the thread count, other programs shared the cores and every figure in the row is disturbed.
Run it with Debian's python3 (/usr/bin/python3), which sees python3-torch. PyTorch runs with
glibc's malloc told to keep its heap (torch_bench.py, keep_heap): under the defaults a training
step can fault its memory in again, and a model's figure depended on which models ran before it
in the process; `--default-malloc` measures PyTorch as it comes.

Below the table: the yardsticks dagger bench measured in each configuration (its JIT's SGEMM
peak and OpenBLAS's SGEMM through PyTorch, both 1024^3 at the configuration's thread count, in
alternating rounds inside dagger bench), and every contraction kernel of each training step and
of each inference plan with its GFLOP/s as a fraction of both (medians over rounds).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_json(command, env):
    print("+ " + " ".join(command), file=sys.stderr)
    done = subprocess.run(command, stdout=subprocess.PIPE, env=env, check=False, text=True)
    if done.returncode != 0:
        # Named after the script that runs it (compare, ab, adds), which shares this helper.
        sys.exit(f"{script_name()}: {command[0]} exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def script_name():
    """The running script's name (compare, ab, adds), for its error lines."""
    return os.path.splitext(os.path.basename(sys.argv[0]))[0]


def relative_pattern(parser, args):
    """args.relative_to (ab.py's and adds.py's --relative-to) compiled, or None without it; exit 2
    with one line naming the option where it is no regular expression."""
    if args.relative_to is None:
        return None
    try:
        return re.compile(args.relative_to)
    except re.error as e:
        return parser.exit(
            2, f"{script_name()}.py: --relative-to: '{args.relative_to}' is not a regular expression ({e})\n")


def save_json(path, data):
    """Writes `data` to `path` whole or not at all: aside, then renamed over the path."""
    partial = f"{path}.partial"
    with open(partial, "w") as out:
        json.dump(data, out)
    os.replace(partial, path)


def by_model(report):
    return {m["model"]: m for m in report["models"]}


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percent(value):
    return "-" if value is None else f"{100 * value:.1f}%"


def print_yardsticks(raw):
    """The SGEMM yardsticks of each (batch, threads) configuration, and every contraction's
    fraction of both, medians over the configuration's rounds."""
    configurations = sorted({(r["batch"], r["threads"]) for r in raw})
    for batch, threads in configurations:
        runs = [r["dagger"] for r in raw if (r["batch"], r["threads"]) == (batch, threads)]
        jit = statistics.median(m["machine"]["sgemm"]["peak_gflops"] for m in runs)
        blas = median_or_none(m["machine"]["blas_sgemm"]["gflops"] for m in runs)
        n = runs[0]["machine"]["sgemm"]["n"]
        if blas is None:
            why = runs[0]["machine"]["blas_sgemm"].get("not_measured", "")
            blas_text = f"OpenBLAS through PyTorch not measured: {why}"
        else:
            blas_text = f"OpenBLAS through PyTorch {blas:.1f} GFLOP/s ({runs[0]['machine']['blas_sgemm']['library']})"
        print(f"\nbatch {batch}, {threads} thread(s): SGEMM {n}^3 through dagger's JIT {jit:.1f} GFLOP/s, {blas_text}")
        for plan, title in (("kernels", "training step"), ("inference_kernels", "inference")):
            if not any(model.get(plan) for model in runs[0]["models"]):
                continue
            heading = f"contraction kernel ({title})"
            print(f"  {'model':<8} {heading:<44} {'GFLOP/s':>8} {'of JIT':>7} {'of BLAS':>7}")
            for model in runs[0]["models"]:
                name = model["model"]
                for kernel in model.get(plan, []):
                    if not kernel["contraction"]:
                        continue
                    same = [k for m in runs for mm in m["models"] if mm["model"] == name
                            for k in mm.get(plan, []) if k["key"] == kernel["key"]]
                    gflops = statistics.median(k["gflops"] for k in same)
                    print(f"  {name:<8} {kernel['name'][:44]:<44} {gflops:>8.1f} "
                          f"{percent(statistics.median(k['ratio'] for k in same)):>7} "
                          f"{percent(median_or_none(k.get('ratio_of_blas_sgemm') for k in same)):>7}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["shallow", "mlp512", "mlp2048", "cnn3", "rescnn"])
    parser.add_argument("--batch", type=int, nargs="+", default=[64])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of both programs per configuration")
    parser.add_argument("--dagger", default=os.path.join(ROOT, "build", "dagger"))
    parser.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                        help="bf16: dagger bench --precision bf16 (dense layers' products) against PyTorch's "
                             "autocast to bfloat16 on the CPU (its dense layers and convolutions)")
    parser.add_argument("--optimizer", choices=["sgd", "momentum", "adam", "adamw"], default="adam",
                        help="the training steps' optimizer on both sides (dagger bench --optimizer; torch_bench.py "
                             "builds PyTorch's equivalent)")
    parser.add_argument("--nesterov", action="store_true", help="--optimizer momentum with Nesterov's look-ahead")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--save", help="write every raw report and the table rows to this JSON file")
    parser.add_argument("--default-malloc", action="store_true",
                        help="run PyTorch with glibc's malloc thresholds as they are (torch_bench.py keeps its heap "
                             "otherwise)")
    args = parser.parse_args()
    if args.nesterov and args.optimizer != "momentum":
        parser.error(f"--nesterov applies to --optimizer momentum, not {args.optimizer}")
    if not os.access(args.dagger, os.X_OK):
        sys.exit(f"compare: no dagger binary at {args.dagger} (build first, or pass --dagger)")

    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)  # let OpenBLAS pick its best kernel for this CPU
    env.setdefault("DAGGER_PYTHON", sys.executable)  # dagger bench times OpenBLAS through this Python's torch
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats),
              "--precision", args.precision, "--optimizer", args.optimizer] + (["--nesterov"] if args.nesterov else [])
    rows, raw = [], []
    for batch in args.batch:
        for threads in args.threads:
            config = ["--batch", str(batch), "--threads", str(threads)] + common
            rounds, loads = [], []
            for _ in range(args.rounds):
                ours = run_json([args.dagger, "bench", *args.models, "--json", *config], env)
                theirs = run_json([sys.executable, os.path.join(HERE, "torch_bench.py"), *args.models, *config,
                                   *(["--default-malloc"] if args.default_malloc else [])], env)
                rounds.append((by_model(ours), by_model(theirs)))
                loads.append(ours["machine"]["load_average"])
                raw.append({"batch": batch, "threads": threads, "dagger": ours, "torch": theirs})
            for model in args.models:
                row = {"model": model, "batch": batch, "threads": threads, "load": statistics.median(loads)}
                for phase in ("train", "inference"):
                    d = statistics.median(r[0][model][phase]["images_per_sec_median"] for r in rounds)
                    t = statistics.median(r[1][model][phase]["images_per_sec_median"] for r in rounds)
                    row[phase] = {"dagger": d, "torch": t, "ratio": d / t}
                rows.append(row)

    header = ["model", "batch", "threads", "dagger train img/s", "PyTorch train img/s", "train ratio",
              "dagger infer img/s", "PyTorch infer img/s", "infer ratio", "load avg"]
    lines = []
    for r in rows:
        tr, inf = r["train"], r["inference"]
        lines.append([r["model"], str(r["batch"]), str(r["threads"]), f"{tr['dagger']:.0f}", f"{tr['torch']:.0f}",
                      f"{tr['ratio']:.2f}x", f"{inf['dagger']:.0f}", f"{inf['torch']:.0f}", f"{inf['ratio']:.2f}x", f"{r['load']:.1f}"])
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|")
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(l[i]) for l in lines)) for i, h in enumerate(header)]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
        for line in lines:
            print("  ".join(c.rjust(w) for c, w in zip(line, widths)))
    print(f"\ntraining steps: {args.optimizer}{' (Nesterov)' if args.nesterov else ''} on both sides")
    print_yardsticks(raw)
    if args.save:
        save_json(args.save, {"rows": rows, "runs": raw})


if __name__ == "__main__":
    main()
