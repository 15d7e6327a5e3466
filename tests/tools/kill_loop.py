#!/usr/bin/python3
"""kill -9 at random points of `dagger train` and `dagger suite`, rerun until each finishes.

Usage: kill_loop.py DAGGER FASHION_MNIST_DIR [SEED] [--mpirun MPIRUN]

For each command: one uninterrupted run into A; then the same command into B, killed with
SIGKILL after a random delay (seeded, so the delays are the same every time) and rerun, a fixed
number of times, and once more to its end. B must then hold the same files as A, byte for byte
except for wall-clock fields, and no temporary file (*.tmp*, *.old) anywhere.

With --mpirun, the sharded suite instead: A is the one-process suite (E05 and E06, one JIT
thread), B `mpirun -np 2 dagger suite --distributed`, each interruption a random delay in and
then as soon as both ranks train a run, by turns SIGKILL to every process of the job (mpirun and
its ranks, as when a node fails) and SIGTERM to mpirun (as a batch scheduler stops a job: mpirun
ends its ranks). B is finished with -np 3: a resumed suite may have any rank count.

Ignored as wall-clock measurements or as counts of this invocation's own work:
  history.csv       the columns seconds and images_per_sec
  metrics.json      wall_seconds, images_per_sec, resumed (dagger train); train_seconds,
                    images_per_sec, provenance.finished_at, provenance.resumed and
                    provenance.sessions (which invocations trained which epochs), and each
                    history row's seconds and images/s (its 6th and 7th values) (dagger suite)
  manifest.json     the same fields inside the training record ("meta")
  results.json      wall_seconds, trained, reused (how many runs this invocation trained)
  report.md/.html   compared by presence only: they print timings and those counts
  plots/*.log       gnuplot's messages, compared by presence only
  .lock             the output folder's lock file: it holds the pid of its last holder
"""
import argparse
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

WALL_CLOCK_KEYS = {"seconds", "images_per_sec", "wall_seconds", "train_seconds", "finished_at", "resumed", "sessions",
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


def runs_in_flight(out, since):
    """The run folders of the suite in `out` that were (re)started after `since` and have not
    finished: a run writes its config.json whenever it starts training, metrics.json at its end."""
    count = 0
    for folder in Path(out, "runs").glob("*"):
        try:
            count += folder.joinpath("config.json").stat().st_mtime >= since and not (folder / "metrics.json").exists()
        except FileNotFoundError:  # not written yet, or renamed into place just now
            pass
    return count


def session_processes(session):
    """The pids of the processes of session `session`: mpirun and its ranks (each rank has a
    process group of its own, so a signal to mpirun's group misses them)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def killed_job(command, out, delay, kill_all):
    """Starts the mpirun command in a session of its own; after `delay` seconds, once two runs
    train at once (one per rank), SIGKILLs every process of the job (`kill_all`) or SIGTERMs
    mpirun. Waits until no process of the job is left; returns whether it had finished first."""
    started = time.time()
    process = subprocess.Popen(command + [out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        while process.poll() is None and runs_in_flight(out, started) < 2:
            time.sleep(0.005)
    if process.poll() is not None:
        if process.returncode != 0:
            sys.exit(f"a rerun of {' '.join(command)} {out} exited with {process.returncode}")
        return True
    if kill_all:
        for pid in session_processes(process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    else:
        process.send_signal(signal.SIGTERM)
    process.wait()
    deadline = time.monotonic() + 60
    while session_processes(process.pid):
        if time.monotonic() > deadline:
            sys.exit(f"ranks of {' '.join(command)} {out} still run a minute after mpirun ended")
        time.sleep(0.05)
    return False


def kill_loop(label, command, work, rng, kills, reference=None, last=None, job=False):
    """Kills `command` `kills` times in B and compares B, finished by `last` (default: the
    command), with A, an uninterrupted run of `reference` (default: the command). An mpirun
    command (`job`) is killed as a whole job, by killed_job."""
    a, b = work / f"{label}-A", work / f"{label}-B"
    run(reference or command, str(a))
    # A second whole run, its kernels now cached, times what the killed runs do.
    seconds = run(command, str(work / f"{label}-timing"))
    finished = 0
    for k in range(kills):
        # Anywhere in a whole run's time: while the data loads, epochs train, checkpoints and
        # results are written (a rerun after the end resumes nothing, rewrites the results and
        # is killed in that too); every other kill waits for the next write after its delay.
        if job:
            # A job is killed once both ranks train, which its end (E06's one run) never sees:
            # early delays, so that each rerun, reusing what finished, trains a little further.
            finished += killed_job(command, str(b), rng.uniform(0.02, 0.3) * seconds, kill_all=k % 2 == 0)
        else:
            finished += killed_run(command, str(b), rng.uniform(0.02, 1.0) * seconds, at_write=k % 2 == 1)
    run(last or command, str(b))
    resumed = sum(json.loads(m.read_text()).get("provenance", {}).get("resumed", False) is True
                  for m in b.glob("runs/*/metrics.json"))
    print(f"{label}: uninterrupted {seconds:.1f} s; {kills} kills, {finished} of those runs had finished"
          + (f"; {resumed} runs resumed from last/" if (b / "runs").is_dir() else ""), flush=True)
    problems = compare(a, b, label)
    if finished == kills:
        problems.append(f"{label}: every run finished before its kill: nothing was interrupted")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dagger")
    parser.add_argument("data")
    parser.add_argument("seed", nargs="?", type=int, default=15)
    parser.add_argument("--mpirun", help="kill the sharded suite under this mpirun instead")
    args = parser.parse_args()
    dagger, data, rng = args.dagger, args.data, random.Random(args.seed)
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
        if args.mpirun:
            suite = ["suite", "--profile", "quick", "--only", "E05,E06", "--no-plots", "--threads", "1", "--quiet",
                     "--data", data, "--out"]
            job = [args.mpirun, "-q", "--allow-run-as-root", "--oversubscribe", "-np"]
            sharded = [dagger, "suite", "--distributed"] + suite[1:]
            problems += kill_loop("mpi-suite", job + ["2"] + sharded, work, rng, 6, reference=[dagger] + suite,
                                  last=job + ["3"] + sharded, job=True)
        else:
            for label, command, kills in commands:
                problems += kill_loop(label, command, work, rng, kills)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if problems:
        sys.exit("\n".join(problems))
    print("every killed and rerun command ended with the bytes of an uninterrupted run")


if __name__ == "__main__":
    main()
