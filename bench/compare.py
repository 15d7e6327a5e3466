#!/usr/bin/env python3
"""dagger beside PyTorch: runs `dagger bench --json` and bench/torch_bench.py on the same models,
batch sizes and thread counts, and prints a side-by-side table of training and inference
images/s and their ratio (dagger / PyTorch).

Each (batch, threads) configuration runs both programs `--rounds` times, alternating, and
reports the median over rounds of each program's own median (of `--repeats` runs of `--steps`
steps), so a burst of load on the machine hits both sides alike and is voted out. The last
column is the system's 1-minute load average as dagger bench saw it (median over rounds): above
the thread count, other programs shared the cores and every figure in the row is disturbed.
Run it with Debian's python3 (/usr/bin/python3), which sees python3-torch.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_json(command, env):
    print("+ " + " ".join(command), file=sys.stderr)
    done = subprocess.run(command, stdout=subprocess.PIPE, env=env, check=False, text=True)
    if done.returncode != 0:
        sys.exit(f"compare: {command[0]} exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def by_model(report):
    return {m["model"]: m for m in report["models"]}


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
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--save", help="write every raw report and the table rows to this JSON file")
    args = parser.parse_args()
    if not os.access(args.dagger, os.X_OK):
        sys.exit(f"compare: no dagger binary at {args.dagger} (build first, or pass --dagger)")

    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)  # let OpenBLAS pick its best kernel for this CPU
    common = ["--steps", str(args.steps), "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    rows, raw = [], []
    for batch in args.batch:
        for threads in args.threads:
            config = ["--batch", str(batch), "--threads", str(threads)] + common
            rounds, loads = [], []
            for _ in range(args.rounds):
                ours = run_json([args.dagger, "bench", *args.models, "--json", *config], env)
                theirs = run_json([sys.executable, os.path.join(HERE, "torch_bench.py"), *args.models, *config], env)
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
    if args.save:
        with open(args.save, "w") as out:
            json.dump({"rows": rows, "runs": raw}, out)


if __name__ == "__main__":
    main()
