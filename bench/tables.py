#!/usr/bin/env python3
"""Tables from a saved bench/compare.py run (`--save FILE`): the yardsticks of each (batch,
threads) configuration, each model's slowest kernels of the training step, and compile time and
memory, as Markdown. Every figure is the median over the run's rounds of what `dagger bench`
reported in each round (a kernel's share is of the median kernels' total), so the tables in
docs/performance.md can be printed again from the file that holds their run:

  /usr/bin/python3 bench/compare.py cnn3 rescnn --batch 64 --threads 2 --rounds 3 --save run.json
  /usr/bin/python3 bench/tables.py run.json --top 8
"""
import argparse
import json
import sys

from compare import median_or_none as median

MIB = 1024.0 * 1024.0


def span(values, digits=1):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}-{high:.{digits}f}"


def mib(size):
    return f"{size / MIB:.2f} MiB" if size < MIB else f"{size / MIB:.1f} MiB"


def load(path):
    """The saved run's list of rounds; one line and exit 1 for a file that is not one."""
    try:
        with open(path) as f:
            runs = json.load(f)["runs"]
    except OSError as e:
        sys.exit(f"tables.py: {path}: {e.strerror}")
    except (ValueError, KeyError, TypeError) as e:
        sys.exit(f"tables.py: {path}: not a file that bench/compare.py --save wrote ({type(e).__name__}: {e})")
    if not isinstance(runs, list) or not runs:
        sys.exit(f"tables.py: {path}: holds no runs")
    return runs


def yardsticks(reports):
    """One line: the ranges over rounds of the machine's figures."""
    machine = [r["machine"] for r in reports]
    blas = [m["blas_sgemm"]["gflops"] for m in machine]
    return (f"SGEMM 1024^3 through dagger's JIT {span([m['sgemm']['peak_gflops'] for m in machine])} GFLOP/s, "
            f"OpenBLAS through PyTorch {span(blas)} GFLOP/s, FMA in registers "
            f"{span([m['fma']['peak_gflops'] for m in machine])} GFLOP/s, streaming copy "
            f"{span([m['copy']['gbps'] for m in machine])} GB/s, load {span([m['load_average'] for m in machine])} "
            f"({len(machine)} rounds; CPU {machine[0]['cpu']}, {machine[0]['vector_width']} floats per vector)")


def kernel_table(results, top):
    """The training step's `top` slowest kernels, medians over rounds, and the rest in one row."""
    names = {}
    for result in results:
        for k in result["kernels"]:
            names.setdefault(k["name"], []).append(k)
    rows = []
    for name, ks in names.items():
        contraction = ks[0]["contraction"]
        rows.append({"name": name, "ms": median([k["ms_per_step"] for k in ks]),
                     "gflops": median([k["gflops"] for k in ks]), "gbps": median([k["gbps"] for k in ks]),
                     "ratio": median([k["ratio"] for k in ks]), "contraction": contraction,
                     "blas": median([k["ratio_of_blas_sgemm"] for k in ks]) if contraction else None})
    rows.sort(key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in rows)
    lines = ["| kernel | ms/step | share | GFLOP/s | GB/s | ratio | of BLAS |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows[:top]:
        of = "SGEMM" if r["contraction"] else "copy"
        blas = "-" if r["blas"] is None else f"{100 * r['blas']:.0f}%"
        lines.append(f"| {r['name']} | {r['ms']:.3f} | {100 * r['ms'] / total:.1f}% | {r['gflops']:.1f} | "
                     f"{r['gbps']:.1f} | {100 * r['ratio']:.0f}% of {of} | {blas} |")
    rest = rows[top:]
    if rest:
        ms = sum(r["ms"] for r in rest)
        lines.append(f"| {len(rest)} more | {ms:.3f} | {100 * ms / total:.1f}% | | | | |")
    return total, lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved", metavar="FILE", help="what bench/compare.py --save wrote")
    parser.add_argument("--top", type=int, default=8, help="kernels per model (the rest in one row)")
    args = parser.parse_args()
    if args.top < 1:
        parser.exit(2, f"tables.py: --top must be at least 1, not {args.top}\n")
    runs = load(args.saved)
    try:
        text = tables(runs, args.top)
    except (KeyError, TypeError, ValueError, IndexError) as e:  # a round's report lacks what dagger bench writes
        sys.exit(f"tables.py: {args.saved}: not a file that bench/compare.py --save wrote ({type(e).__name__}: {e})")
    print(text)


def tables(runs, top):
    """The Markdown of every configuration of the saved rounds, then compile time and memory."""
    out = []
    configurations = sorted({(r["batch"], r["threads"]) for r in runs})
    compile_rows = []
    for batch, threads in configurations:
        reports = [r["dagger"] for r in runs if (r["batch"], r["threads"]) == (batch, threads)]
        out.append(f"### Batch {batch}, {threads} thread{'s' if threads > 1 else ''}\n")
        out.append(yardsticks(reports) + "\n")
        models = [m["model"] for m in reports[0]["models"]]
        for model in models:
            results = [m for r in reports for m in r["models"] if m["model"] == model]
            step = median([m["train"]["step_ms_median"] for m in results])
            gflops = median([m["train"]["gflops"] for m in results])
            total, lines = kernel_table(results, top)
            out.append(f"**{model}** training step {step:.3f} ms ({gflops:.1f} GFLOP/s), kernels {total:.3f} ms:\n")
            out.append("\n".join(lines) + "\n")
            c = [m["compile_seconds"] for m in results]
            mem = [m["memory"] for m in results]
            compile_rows.append(
                f"| {model} | {batch} | {threads} | {median([x['train'] for x in c]):.2f} s | "
                f"{median([x['train_from_cache'] for x in c]):.3f} s | {median([x['inference'] for x in c]):.2f} s | "
                f"{mib(median([x['planned_bytes'] for x in mem]))} | "
                f"{mib(median([x['unplanned_upper_bound_bytes'] for x in mem]))} | "
                f"{median([x['peak_rss_bytes'] for x in mem]) / MIB:.0f} MiB |")
    out.append("### Compile time and memory (medians over rounds)\n")
    out.append("| model | batch | threads | training plan, cold | from the disk cache | inference plan, cold | "
               "planned arena | every value at once | peak RSS (bench) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    out.append("\n".join(compile_rows))
    return "\n".join(out)

if __name__ == "__main__":
    main()
