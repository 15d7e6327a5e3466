#!/usr/bin/env python3
"""The installed package and its examples, as a user meets them: installs the build into a
temporary prefix, builds every program of examples/ out of tree against it with
find_package(dagger CONFIG REQUIRED), and runs each on small data, checking what it prints
against the installed `dagger` CLI.

usage: test_examples.py BUILD_DIR SOURCE_DIR FASHION_MNIST_DIR
"""
import gzip
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np

build, source, fashion = sys.argv[1:4]
EXAMPLES = ["custom_cnn", "npy_data", "classify"]


def run(*cmd, **kw):
    """Runs a command; fails the test with its output when it does not exit 0."""
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"FAILED ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def check(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")


def write_png(path, gray):
    """An 8-bit grayscale PNG of a 2-D uint8 array (no filtering), written with zlib alone."""
    h, w = gray.shape
    raw = b"".join(b"\x00" + gray[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def quadrant_data(n, rng):
    """3x20x20 images in 4 classes: the class is the quadrant that is brighter than the rest."""
    x = rng.integers(0, 120, size=(n, 3, 20, 20), dtype=np.uint8)
    y = rng.integers(0, 4, size=n).astype(np.int64)
    for i, k in enumerate(y):
        r, c = divmod(int(k), 2)
        x[i, :, r * 10:(r + 1) * 10, c * 10:(c + 1) * 10] += 100
    return x, y


with tempfile.TemporaryDirectory(prefix="dagger-package-") as tmp:
    prefix = os.path.join(tmp, "prefix")
    run("cmake", "--install", build, "--prefix", prefix)
    check(os.path.exists(os.path.join(prefix, "lib/cmake/dagger/daggerConfig.cmake")), "no daggerConfig.cmake")
    check(os.path.exists(os.path.join(prefix, "include/dagger/dagger.h")), "no dagger/dagger.h")
    programs = {}
    for ex in EXAMPLES:
        out = os.path.join(tmp, "build-" + ex)
        run("cmake", "-S", os.path.join(source, "examples", ex), "-B", out, "-G", "Ninja",
            "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_PREFIX_PATH=" + prefix)
        run("cmake", "--build", out)
        programs[ex] = os.path.join(out, ex)
    dagger = os.path.join(prefix, "bin", "dagger")
    env = dict(os.environ, DAGGER_DATA=fashion)

    # (a) A custom CNN on Fashion-MNIST; the installed CLI scores its checkpoint without its code.
    run_dir = os.path.join(tmp, "run")
    text = run(programs["custom_cnn"], fashion, run_dir, "2", "2000", env=env)
    acc = float(re.search(r"test accuracy ([0-9.]+)", text).group(1))
    check(acc > 0.5, f"custom_cnn reached only {acc} test accuracy:\n{text}")
    checkpoint = os.path.join(run_dir, "checkpoint")
    evaluation = run(dagger, "eval", "--checkpoint", checkpoint, "--train-limit", "2000", "--val-limit", "500",
                     "--test-limit", "500", "--json", env=env)
    scored = json.loads(evaluation.strip().splitlines()[-1])["test"]["accuracy"]
    check(abs(scored - acc) < 5e-5, f"dagger eval gives {scored}, the program {acc}")

    # (c) Classify Fashion-MNIST test images written as PNG files, with the example and with the CLI.
    with gzip.open(os.path.join(fashion, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    pngs = []
    for i in range(4):
        pngs.append(os.path.join(tmp, f"test{i}.png"))
        write_png(pngs[-1], images[i])
    text = run(programs["classify"], checkpoint, *pngs)
    ours = re.findall(r"test\d\.png: (.+) \(([0-9.]+)\)", text)
    check(len(ours) == 4, f"classify printed:\n{text}")
    cli = run(dagger, "predict", "--checkpoint", checkpoint, "--json", *pngs)
    predicted = [p["top"][0]["class"] for p in json.loads(cli)["predictions"]]
    check([c for c, _ in ours] == predicted, f"classify says {ours}, dagger predict {predicted}")

    # (b) Another shape and class count from .npy files.
    data = os.path.join(tmp, "quadrants")
    os.makedirs(data)
    rng = np.random.default_rng(7)
    for split, n in (("train", 1500), ("test", 400)):
        x, y = quadrant_data(n, rng)
        np.save(os.path.join(data, f"{split}_x.npy"), x)
        np.save(os.path.join(data, f"{split}_y.npy"), y)
    text = run(programs["npy_data"], data, "4")
    check("of 3x20x20 in 4 classes" in text, f"npy_data did not see the data's shape:\n{text}")
    acc = float(re.search(r"test accuracy ([0-9.]+)", text).group(1))
    check(acc > 0.6, f"npy_data reached only {acc} on 4 classes:\n{text}")
    check(len(re.findall(r"precision", text)) == 4, f"npy_data did not report 4 classes:\n{text}")
    print("examples: built against the installed package and ran")
