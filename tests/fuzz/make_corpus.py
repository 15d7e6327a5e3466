#!/usr/bin/env python3
"""Writes dagger-fuzz's seed corpus (tests/fuzz/corpus) and the checkpoint fixtures
(tests/fuzz/fixtures) again: small valid files of every format and a few tricky ones.

Usage: tests/fuzz/make_corpus.py [DAGGER_BINARY]
The model texts, IR and checkpoint come from the binary (a 2-epoch `shallow` on 64 images of
Fashion-MNIST); a failing input found later is added by hand next to these.
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def count(dims):
    n = 1
    for d in dims:
        n *= d
    return n


def idx(dims, data=None):
    header = bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return header + (data if data is not None else bytes(i % 256 for i in range(count(dims))))


def npy(descr, shape, values):
    """A version 1.0 .npy file as numpy.save writes it (header padded to 64 bytes)."""
    dims = "".join(f"{d}, " for d in shape).rstrip(" ") if len(shape) != 1 else f"{shape[0]},"
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    element = {"|u1": "B", "<i4": "<i", "<i8": "<q", "<f4": "<f", "<f8": "<d"}[descr]
    assert len(values) == count(shape)
    data = b"".join(struct.pack(element, v) for v in values)
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data


def idx_seeds():
    put("idx", "images-3x4x4", idx([3, 4, 4]))
    put("idx", "images-2x3x2x2", idx([2, 3, 2, 2]))
    put("idx", "labels-5", idx([5], bytes([0, 1, 2, 9, 3])))
    put("idx", "labels-5.gz", gzip.compress(idx([5], bytes([4, 1, 2, 0, 3])), mtime=0))
    put("idx", "images-2x3x3.gz", gzip.compress(idx([2, 3, 3]), mtime=0))
    put("idx", "images-empty-0x2x2", idx([0, 2, 2]))


def npy_seeds():
    put("npy", "images-u1", npy("|u1", [2, 3, 3], range(18)))
    put("npy", "images-f4-nchw", npy("<f4", [2, 2, 2, 2], [i / 15 for i in range(16)]))
    put("npy", "images-f8", npy("<f8", [1, 2, 2], [1.0] * 4))
    put("npy", "labels-i8", npy("<i8", [4], [0, 1, 2, 3]))
    put("npy", "labels-i4", npy("<i4", [2], [5, 0]))
    put("npy", "labels-u1", npy("|u1", [3], [1, 1, 0]))
    put("checkpoint-npy", "f4-2x3", npy("<f4", [2, 3], range(6)))
    put("checkpoint-npy", "f4-scalar", npy("<f4", [], [4.0]))
    put("checkpoint-npy", "f4-empty", npy("<f4", [0, 3], []))


def csv_seeds():
    put("csv", "header-4px", "label,p1,p2,p3,p4\n0,0,255,3,4\n1,1,2,3,4\n")
    put("csv", "floats-4px", "2,0.5,0.25,1e-3,-1\n0,1,1,1,1\r\n")
    put("csv", "one-row-9px", "3,1,2,3,4,5,6,7,8,9")


def tricky_seeds():
    """Inputs at the edges of what the readers accept, each refused or read by a rule of its own."""
    put("idx", "tricky-labels-trailing-byte", idx([5], bytes([0, 1, 2, 3, 4, 0])))
    put("idx", "tricky-images-0-of-huge-shape", idx([0, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], b""))
    put("idx", "tricky-header-only", bytes([0, 0, 8, 3]))
    version2 = npy("|u1", [1, 2, 2], range(4))
    header = version2[10:]
    put("npy", "tricky-version-2", b"\x93NUMPY\x02\x00" + struct.pack("<I", len(header) - 4) + header)
    put("npy", "tricky-shape-1e12", npy("|u1", [0], []).replace(b"(0,)", b"(1000000000000,)"))
    put("npy", "tricky-fortran-order", npy("<f4", [1, 2, 2], [0.0] * 4).replace(b"False", b"True "))
    put("csv", "tricky-header-only", "label,a,b,c,d\n")
    put("csv", "tricky-ragged", "1,2,3,4,5\n1,2,3\n")
    put("model-text", "tricky-version-2", "dagger-model 2\ninput [1,2,2]\n")


def dagger_seeds(dagger):
    env = dict(os.environ, DAGGER_CACHE_DIR="off")

    def run(*args):
        return subprocess.run([dagger, *args], check=True, capture_output=True, text=True, env=env).stdout

    for name, model in [("shallow", "shallow"), ("mlp", "mlp1(8,relu,0.2)"), ("cnn", "cnn(1,bn,0.5,0.25,16)")]:
        put("model-text", f"{name}.dagger", run("ir", model, "--stage", "model"))
    put("ir", "mlp-graph", run("ir", "mlp1(8,relu,0.2)", "--stage", "graph", "--batch", "2"))
    put("ir", "mlp-grad", run("ir", "mlp1(8,relu,0.2)", "--stage", "grad", "--batch", "2"))
    put("ir", "cnn-eval", run("ir", "cnn(1,bn,0.5,0.25,16)", "--stage", "eval", "--batch", "2"))
    put("ir", "cnn-grad-momentum",
        run("ir", "cnn(1,bn,0.5,0.25,16)", "--stage", "grad", "--batch", "2", "--optimizer", "momentum"))
    # The model text's own section, with N for the batch.
    text = run("ir", "mlp1(8,relu,0.2)", "--stage", "model")
    put("ir", "mlp-section-with-N", text.split("mode train\n")[1].split("mode eval\n")[0])

    with tempfile.TemporaryDirectory() as tmp:
        run("train", "shallow", "--epochs", "2", "--train-limit", "64", "--val-limit", "64", "--test-limit", "64",
            "--batch", "32", "--threads", "1", "--out", tmp)
        fixtures = os.path.join(HERE, "fixtures", "checkpoint")
        shutil.rmtree(fixtures, ignore_errors=True)
        os.makedirs(fixtures)
        for folder in ["last", "best"]:
            with open(os.path.join(tmp, folder, "manifest.json")) as f:
                manifest = json.load(f)
            # Only the model's own tensors are fixtures (the Adam moments would triple their size).
            manifest["tensors"] = [t for t in manifest["tensors"] if not t["name"].startswith("adam.")]
            put("manifest", f"{folder}.json", json.dumps(manifest, indent=2))
            for entry in manifest["tensors"] + manifest["texts"]:
                shutil.copy(os.path.join(tmp, folder, entry["file"]), fixtures)


if __name__ == "__main__":
    idx_seeds()
    npy_seeds()
    csv_seeds()
    tricky_seeds()
    if len(sys.argv) > 1:  # without the binary, the model texts, IR and checkpoint stay as they are
        dagger_seeds(sys.argv[1])
