#!/usr/bin/env python3
"""bench/tables.py on a saved compare run made up here: three rounds of one model whose figures
are known, so every printed median can be checked; then the bad inputs it must refuse with one
line and the right exit status.

  check_bench_tables.py PATH/TO/bench/tables.py
"""
import json
import os
import sys
import tempfile

from script_checks import Checks, run

MIB = 1024 * 1024


def kernel(name, ms, contraction, ratio, blas=None):
    return {"name": name, "ms_per_step": ms, "contraction": contraction, "gflops": 100 * ms, "gbps": 10 * ms,
            "ratio": ratio, "ratio_of_blas_sgemm": blas}


def report(r):
    """Round r (0, 1, 2) of one `dagger bench --json`: every median over the rounds is round 1's
    figure or the middle of three."""
    return {
        "machine": {"cpu": "znver5", "vector_width": 16, "load_average": 1.0 + r,
                    "sgemm": {"peak_gflops": 300.0 + 10 * r}, "blas_sgemm": {"gflops": 280.0 + 10 * r},
                    "fma": {"peak_gflops": 400.0}, "copy": {"gbps": 40.0 + r}},
        "models": [{
            "model": "m",
            "train": {"step_ms_median": [2.0, 3.0, 7.0][r], "gflops": [50.0, 51.0, 60.0][r]},
            "compile_seconds": {"train": [1.0, 2.0, 9.0][r], "train_from_cache": [0.1, 1.1, 2.5][r], "inference": [0.5, 1.5, 4.0][r]},
            "memory": {"planned_bytes": [2, 3, 7][r] * MIB, "unplanned_upper_bound_bytes": MIB // 2,
                       "peak_rss_bytes": [100, 101, 110][r] * MIB},
            # Skewed and out of order, so that a mean or another round would print otherwise.
            "kernels": [kernel("k1_matmul", [1.5, 1.0, 1.1][r], True, [0.95, 0.7, 0.8][r], [1.2, 0.8, 0.9][r]),
                        kernel("k2_relu", [0.5, 0.9, 0.6][r], False, 1.5),
                        kernel("k3_add", 0.3, False, 0.25)],
        }],
    }



def main():
    tables = sys.argv[1]
    checks = Checks()
    expect = checks.expect

    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "run.json")
        with open(saved, "w") as f:
            json.dump({"rows": [], "runs": [{"batch": 64, "threads": 2, "dagger": report(r), "torch": {}}
                                            for r in range(3)]}, f)
        status, out, err = run(tables, saved, "--top", "2")
        expect(status == 0, f"exit {status} on a good file: {err}")
        for line in [
                "### Batch 64, 2 threads",
                "SGEMM 1024^3 through dagger's JIT 300.0-320.0 GFLOP/s, OpenBLAS through PyTorch 280.0-300.0 GFLOP/s",
                "streaming copy 40.0-42.0 GB/s, load 1.0-3.0 (3 rounds; CPU znver5, 16 floats per vector)",
                # medians: step 3.0 ms; kernels 1.1 + 0.6 + 0.3 = 2.0 ms
                "**m** training step 3.000 ms (51.0 GFLOP/s), kernels 2.000 ms:",
                "| k1_matmul | 1.100 | 55.0% | 110.0 | 11.0 | 80% of SGEMM | 90% |",
                "| k2_relu | 0.600 | 30.0% | 60.0 | 6.0 | 150% of copy | - |",
                "| 1 more | 0.300 | 15.0% | | | | |",
                "| m | 64 | 2 | 2.00 s | 1.100 s | 1.50 s | 3.0 MiB | 0.50 MiB | 101 MiB |"]:
            expect(line in out, f"missing from the output: {line}")
        expect("k3_add |" not in out, "the third kernel printed past --top 2")

        status, out, err = run(tables, os.path.join(tmp, "absent.json"))
        expect(status == 1 and err.count("\n") == 1 and "absent.json: No such file" in err,
               f"a missing file: exit {status}, {err!r}")
        other = os.path.join(tmp, "other.json")
        with open(other, "w") as f:
            json.dump({"models": []}, f)
        status, out, err = run(tables, other)
        expect(status == 1 and "other.json: not a file that bench/compare.py --save wrote" in err,
               f"another JSON: exit {status}, {err!r}")
        with open(other, "w") as f:
            f.write("{")
        status, out, err = run(tables, other)
        expect(status == 1 and "not a file that bench/compare.py --save wrote" in err,
               f"a broken JSON: exit {status}, {err!r}")
        # A round whose report lacks what dagger bench writes (here its machine), and no rounds.
        lacking = report(0)
        del lacking["machine"]
        with open(other, "w") as f:
            json.dump({"rows": [], "runs": [{"batch": 64, "threads": 2, "dagger": lacking, "torch": {}}]}, f)
        status, out, err = run(tables, other)
        expect(status == 1 and out == "" and err.count("\n") == 1 and "(KeyError: 'machine')" in err,
               f"a report without its machine: exit {status}, {out!r} {err!r}")
        with open(other, "w") as f:
            json.dump({"rows": [], "runs": []}, f)
        status, out, err = run(tables, other)
        expect(status == 1 and "other.json: holds no runs" in err, f"no runs: exit {status}, {err!r}")
        status, out, err = run(tables, saved, "--top", "0")
        expect(status == 2 and "--top must be at least 1, not 0" in err, f"--top 0: exit {status}, {err!r}")

    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
