#!/usr/bin/env python3
"""bench/adds.py --load on saved runs made up here, whose medians are known: the plain reading,
and the reading relative to the kernels both models share, which divides out a round that ran
at half speed; then the bad inputs it must refuse with one line and the right exit status.

  check_bench_adds.py PATH/TO/bench/adds.py
"""
import json
import os
import sys
import tempfile

from script_checks import Checks, run

# Three rounds. The shared kernel k1 takes 1 ms, the part (k2) 0.5 ms: round 1 runs the model
# with the part at half speed, round 2 the model without it. Plainly the part adds 0.5, 2.0 and
# -0.4 ms; relative to k1 (median of its six runs: 1 ms) 0.5, 0.5 and 0.6 ms.
SAVED = {
    "models": ["with", "without"],
    "binaries": ["bin"],
    "runs": {"bin": {
        "with": [{"k1_conv2d_backward_filter": 1.0, "k2_batchnorm": 0.5},
                 {"k1_conv2d_backward_filter": 2.0, "k2_batchnorm": 1.0},
                 {"k1_conv2d_backward_filter": 1.0, "k2_batchnorm": 0.6}],
        "without": [{"k7_conv2d_backward_filter": 1.0},
                    {"k7_conv2d_backward_filter": 1.0},
                    {"k7_conv2d_backward_filter": 2.0}],
    }},
}



def main():
    adds = sys.argv[1]
    checks = Checks()
    expect = checks.expect

    with tempfile.TemporaryDirectory() as tmp:
        saved = os.path.join(tmp, "runs.json")
        out = checks.reads(adds, saved, SAVED, "--relative-to", "conv2d_backward", "--per-kernel")
        for line in [
                # Totals 1.5, 3.0, 1.6 and 1.0, 1.0, 2.0; shares 33.3%, 66.7%, -25.0%.
                "bin: with kernels 1.600 ms per step, without 1.000 ms; the part adds 0.500 ms, 33.3% of with's "
                "kernels' time (rounds' interquartile -25.0-66.7%, 3 rounds)",
                # Scaled totals 1.5, 1.5, 1.6 and 1.0, 1.0, 1.0; shares 33.3%, 33.3%, 37.5%.
                "bin, relative to 'conv2d_backward': with kernels 1.500 ms per step, without 1.000 ms; the part adds "
                "0.500 ms, 33.3% of with's kernels' time (rounds' interquartile 33.3-37.5%, 3 rounds)",
                "    k2_batchnorm" + " " * 52 + " 0.600 ms"]:
            expect(line in out, f"missing from the output: {line}\n{out}")

        status, out, err = run(adds, "--load", saved, "--save", os.path.join(tmp, "again.json"))
        expect(status == 2 and "--load reads saved runs" in err, f"--load with --save: exit {status}, {err!r}")

        def refused(content, args, code, fragment, what):
            checks.refuses(adds, os.path.join(tmp, "bad.json"), content, args, code, fragment, what)

        refused("{", [], 1, "not a file that bench/adds.py --save wrote", "a broken JSON")
        refused({"rows": []}, [], 1, "(KeyError: 'models')", "another script's JSON")
        uneven = json.loads(json.dumps(SAVED))
        uneven["runs"]["bin"]["without"].pop()
        refused(uneven, [], 1, "the same number of runs of each", "runs of unequal count")
        refused(SAVED, ["--relative-to", "matmul"], 1, "a run of bin has no kernel matching 'matmul'",
                "a reference no run has")
        refused(SAVED, ["--relative-to", "("], 2, "--relative-to: '(' is not a regular expression", "a bad pattern")
        status, out, err = run(adds, "--load", os.path.join(tmp, "absent.json"))
        expect(status == 1 and "absent.json: No such file" in err, f"a missing file: exit {status}, {err!r}")
        status, out, err = run(adds, "cnn3")
        expect(status == 2 and "give two models" in err, f"one model: exit {status}, {err!r}")
        status, out, err = run(adds, "cnn3", "mlp512", "--binaries", os.path.join(tmp, "absent"))
        expect(status == 2 and "is not an executable file" in err, f"a missing binary: exit {status}, {err!r}")

    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
