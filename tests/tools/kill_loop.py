#!/usr/bin/python3
"""kill -9 at random points of `dagger train` and `dagger suite`, rerun until each finishes.

Usage: kill_loop.py DAGGER FASHION_MNIST_DIR [SEED]

For each command: one uninterrupted run into A; then the same command into B, killed with
SIGKILL after a random delay (seeded, so the delays are the same every time) and rerun, a fixed
number of times, and once more to its end. B must then hold the same files as A, byte for byte
except for wall-clock fields, and no temporary file (*.tmp*, *.old) anywhere.

Ignored as wall-clock measurements or as counts of this invocation's own work:
  history.csv       the columns seconds and images_per_sec
  metrics.json      wall_seconds, images_per_sec, resumed (dagger train); train_seconds,
                    images_per_sec, provenance.finished_at and provenance.resumed, and each
                    history row's seconds and images/s (its 6th and 7th values) (dagger suite)
  manifest.json     the same fields inside the training record ("meta")
  results.json      wall_seconds, trained, reused (how many runs this invocation trained)
  report.md/.html   compared by presence only: they print timings and those counts
  plots/*.log       gnuplot's messages, compared by presence only
  .lock             the output folder's lock file: it holds the pid of its last holder
"""
import csv
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WALL_CLOCK_KEYS = {"seconds", "images_per_sec", "wall_seconds", "train_seconds", "finished_at", "resumed",
                   "trained", "reused"}
PRESENCE_ONLY = {"report.md", "report.html", ".lock"}


def without_wall_clock(value):
    """The JSON value with every wall-clock key removed, and the suite's history rows
    ([epoch, train_loss, train_acc, val_loss, val_acc, seconds, images/s]) cut to their results."""
    if isinstance(value, dict):
        return {k: without_wall_clock(v) for k, v in value.items() if k not in WALL_CLOCK_KEYS}
    if isinstance(value, list):
        if value and all(isinstance(row, list) and len(row) == 7 for row in value):
            return [row[:5] for row in value]
        return [without_wall_clock(v) for v in value]
    return value


def history_rows(text):
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        row.pop("seconds", None)
        row.pop("images_per_sec", None)
    return rows


def same_contents(a, b, a_root, b_root):
    """Whether two files of a run agree once wall-clock fields are set aside. Paths inside A's
    files (a plot's script names its data file) are read as the same paths inside B."""
    if a.name in PRESENCE_ONLY or a.suffix == ".log":
        return True
    a_bytes = a.read_bytes().replace(str(a_root).encode(), str(b_root).encode())
    if a.suffix == ".json":
        return without_wall_clock(json.loads(a_bytes)) == without_wall_clock(json.loads(b.read_bytes()))
    if a.name == "history.csv":
        return history_rows(a_bytes.decode()) == history_rows(b.read_text())
    return a_bytes == b.read_bytes()


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def compare(a, b, label):
    """The differences between the uninterrupted run A and the killed-and-rerun run B."""
    problems = []
    leftovers = [p for p in files(b) if ".tmp" in p or ".old" in p]
    leftovers += [str(p.relative_to(b)) for p in b.rglob("*") if p.is_dir() and p.suffix in (".tmp", ".old")]
    if leftovers:
        problems.append(f"{label}: temporary files left in B: {leftovers}")
    fa, fb = files(a), files(b)
    if fa != fb:
        problems.append(f"{label}: files only in A: {sorted(set(fa) - set(fb))}, only in B: {sorted(set(fb) - set(fa))}")
    checked = 0
    for name in sorted(set(fa) & set(fb)):
        checked += 1
        if not same_contents(a / name, b / name, a, b):
            problems.append(f"{label}: {name} differs")
    if not any(name.endswith(".npy") for name in fa):
        problems.append(f"{label}: A holds no .npy file: the command wrote no checkpoint")
    print(f"{label}: compared {checked} files", flush=True)
    return problems


def run(command, out):
    started = time.monotonic()
    done = subprocess.run(command + [out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} {out} exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return time.monotonic() - started


def temporaries(root):
    """The temporary files and folders under root: a write under way."""
    try:
        return {str(p) for p in Path(root).rglob("*") if ".tmp" in p.name or p.name.endswith(".old")}
    except FileNotFoundError:  # removed while listed
        return set()


def killed_run(command, out, delay, at_write):
    """Starts the command and SIGKILLs it after `delay` seconds or, with `at_write`, as soon
    after as a temporary file or folder shows it is writing (when a kill does the most harm);
    returns whether it finished first."""
    process = subprocess.Popen(command + [out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        while at_write and process.poll() is None and not temporaries(out):
            pass
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return False
    if process.returncode != 0:
        sys.exit(f"a rerun of {' '.join(command)} {out} exited with {process.returncode}")
    return True


def kill_loop(label, command, work, rng, kills):
    a, b = work / f"{label}-A", work / f"{label}-B"
    run(command, str(a))
    # A second whole run, its kernels now cached, times what the killed runs do.
    seconds = run(command, str(work / f"{label}-timing"))
    finished = 0
    for k in range(kills):
        # Anywhere in a whole run's time: while the data loads, epochs train, checkpoints and
        # results are written (a rerun after the end resumes nothing, rewrites the results and
        # is killed in that too); every other kill waits for the next write after its delay.
        finished += killed_run(command, str(b), rng.uniform(0.02, 1.0) * seconds, at_write=k % 2 == 1)
    run(command, str(b))
    print(f"{label}: uninterrupted {seconds:.1f} s; {kills} kills, {finished} of those runs had finished", flush=True)
    problems = compare(a, b, label)
    if finished == kills:
        problems.append(f"{label}: every run finished before its kill: nothing was interrupted")
    return problems


def main():
    dagger, data = sys.argv[1], sys.argv[2]
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 15)
    limits = ["--train-limit", "1024", "--val-limit", "512", "--test-limit", "512"]
    train = [dagger, "train", "--epochs", "3", "--patience", "2", "--threads", "2", "--quiet", "--data", data] + limits
    commands = [
        ("mlp", train[:2] + ["mlp1(64,relu,0.2)"] + train[2:] + ["--out"], 10),
        ("cnn", train[:2] + ["cnn(1,bn,0.5,0.25,32)"] + train[2:] + ["--out"], 8),
        ("suite", [dagger, "suite", "--profile", "quick", "--only", "E06", "--threads", "2", "--quiet", "--data", data,
                   "--out"], 8),
    ]
    work = Path(tempfile.mkdtemp(prefix="dagger-kill-loop-"))
    try:
        problems = []
        for label, command, kills in commands:
            problems += kill_loop(label, command, work, rng, kills)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        sys.exit("\n".join(problems))
    print("every killed and rerun command ended with the bytes of an uninterrupted run")


if __name__ == "__main__":
    main()
