#!/usr/bin/env python3
"""bench/ab.py --load on saved runs made up here, whose medians are known: the inference plan's
kernels picked by name, plainly and relative to a kernel the change leaves alone, which divides
out a round that ran at half speed; then the bad inputs it must refuse with one line and the
right exit status.

  check_bench_ab.py PATH/TO/bench/ab.py
"""
import json
import os
import sys
import tempfile

from script_checks import Checks, run


def report(picked, ms, reference):
    """One `dagger bench --json` report: the inference plan runs `picked` in `ms` and the
    unchanged k9_ref in `reference`; the training step's kernels are never read here."""
    return {
        "machine": {"sgemm": {"peak_gflops": 300.0}, "load_average": 1.0, "build": {}},
        "models": [{
            "train": {"images_per_sec_median": 1.0, "step_ms_median": 99.0},
            "inference": {"images_per_sec_median": 1000.0 / (ms + reference), "step_ms_median": ms + reference},
            "kernels": [{"name": "k1_conv", "key": "train", "ms_per_step": 50.0, "gflops": 1.0}],
            "inference_kernels": [{"name": picked, "key": "conv2d [1]", "ms_per_step": ms, "gflops": 10 / ms},
                                  {"name": "k9_ref", "key": "conv2d [2]", "ms_per_step": reference, "gflops": 1.0}],
        }],
    }


# The old side's round 2 and the new side's round 3 ran at half speed. Plainly the picked kernel
# takes 1.1 ms (old) and 0.8 ms (new); relative to k9_ref (median of its six runs: 1 ms) 1.0 and
# 0.8 ms.
SAVED = {
    "plan": "eval", "match": "conv", "sources": {"old": None, "new": None}, "label": "conv",
    "runs": {"old": [report("k1_conv", 1.0, 1.0), report("k1_conv", 2.0, 2.0), report("k1_conv", 1.1, 1.0)],
             "new": [report("k2_conv", 0.8, 1.0), report("k2_conv", 0.8, 1.0), report("k2_conv", 1.6, 2.0)]},
}


def main():
    ab = sys.argv[1]
    checks = Checks()
    expect = checks.expect
    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "runs.json")
        out = checks.reads(ab, saved, SAVED, "--relative-to", "ref", "--per-kernel")
        for line in [
                "round 2 old: 250 img/s, step 4.0 ms, conv 2.00 ms (50.0%)",
                # The inference figures, not the training step's 99 ms.
                "median old: 476 inference images/s, step 2.1 ms, conv 1.10 ms (50.0% of the kernels' time); "
                "relative to 'ref' 1.000 ms",
                "median new: 556 inference images/s, step 1.8 ms, conv 0.80 ms (44.4% of the kernels' time); "
                "relative to 'ref' 0.800 ms",
                "  k1_conv conv2d [1]: old 1.100 ms 9 GFLOP/s (relative 1.000 ms), new -",
                "  k2_conv conv2d [1]: old -, new 0.800 ms 12 GFLOP/s (relative 0.800 ms)"]:
            expect(line in out, f"missing from the output: {line}\n{out}")

        def refused(content, args, code, fragment, what):
            checks.refuses(ab, os.path.join(tmp, "bad.json"), content, args, code, fragment, what)

        refused("{", [], 1, "not a file that bench/ab.py --save wrote", "a broken JSON")
        refused({"rows": [], "runs": []}, [], 1, "not a file that bench/ab.py --save wrote", "bench/compare.py's JSON")
        lacking = json.loads(json.dumps(SAVED))
        del lacking["label"]
        refused(lacking, [], 1, "(KeyError: 'label')", "a file without its label")
        empty = json.loads(json.dumps(SAVED))
        empty["runs"]["new"] = []
        refused(empty, [], 1, "no runs of the new side", "no runs of one side")
        uneven = json.loads(json.dumps(SAVED))
        uneven["runs"]["new"].pop()
        refused(uneven, [], 1, "the two sides hold different numbers of runs", "runs of unequal count")
        refused(SAVED, ["--match", "matmul"], 2, "--load reads saved runs", "--load with another --match")
        refused(SAVED, ["--relative-to", "matmul"], 1, "a run has no eval kernel matching 'matmul'",
                "a reference no run has")
        refused(SAVED, ["--relative-to", "("], 2, "--relative-to: '(' is not a regular expression", "a bad pattern")
        status, out, err = run(ab, "--load", saved, "--save", os.path.join(tmp, "again.json"))
        expect(status == 2 and "--load reads saved runs" in err, f"--load with --save: exit {status}, {err!r}")
        status, out, err = run(ab, "--load", os.path.join(tmp, "absent.json"))
        expect(status == 1 and "absent.json: No such file" in err, f"a missing file: exit {status}, {err!r}")
        status, out, err = run(ab, os.path.join(tmp, "absent"), os.path.join(tmp, "absent"), "cnn3")
        expect(status == 2 and "is not an executable file" in err, f"a missing binary: exit {status}, {err!r}")
        status, out, err = run(ab)
        expect(status == 2 and "give OLD and NEW binaries and a MODEL" in err, f"no arguments: exit {status}, {err!r}")
    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
