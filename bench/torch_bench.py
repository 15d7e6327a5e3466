#!/usr/bin/env python3
"""The zoo's models in PyTorch, timed with the protocol of `dagger bench`.

Each model mirrors models/zoo.cpp layer for layer: Dense = Linear with Glorot-uniform weights and
zero bias; Conv = 3x3 'same' (or 1x1) convolution with He-uniform weights and zero bias;
BatchNorm with eps 1e-3 and running averages new = 0.99 * old + 0.01 * batch (PyTorch's
momentum 0.01); inverted dropout; 2x2 max pooling; Adam (lr 1e-3, betas 0.9/0.999, eps 1e-7)
on the mean softmax cross-entropy, or with --optimizer what `dagger bench --optimizer` takes with
dagger train's defaults: plain SGD, SGD with momentum 0.9 (dagger's v = 0.9 v - lr g, p + v is
PyTorch's v = 0.9 v + g, p - lr v at a constant lr; with --nesterov, dagger's p + 0.9 v - lr g
after that is PyTorch's p - lr (g + 0.9 v)), or AdamW without weight decay. Inputs are
random images [B, 1, 28, 28] and labels, fixed seed. A training step is zero_grad + forward + loss + backward + step; an inference step is
the eval-mode forward and softmax without autograd. After `warmup` steps, `repeats` runs of
`steps` steps are timed and the median images/s is reported, as JSON on stdout. glibc's malloc
is told to keep its heap (see keep_heap; `--default-malloc` to leave it), so a model's figure
does not depend on which models ran before it in the process. With --precision bf16 the
forward passes (and so their backward) run under torch.autocast("cpu", dtype=torch.bfloat16),
PyTorch's own mixed precision: its dense layers and convolutions take bfloat16 operands.

With --sgemm N instead of models, it times torch.mm of two random float32 N x N matrices (the
BLAS PyTorch was built with: OpenBLAS for Debian's python3-torch) at --threads threads, the best
of as many calls as fit in 0.4 s (at least three), as `dagger bench` times its own JIT SGEMM; it
prints one JSON line, and `dagger bench` runs it as a child to report the BLAS beside the JIT.
"""
import argparse
import contextlib
import ctypes
import ctypes.util
import json
import os
import statistics
import sys
import time


def threads_from_argv():
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=1)
    return max(1, pre.parse_known_args()[0].threads)


# torch.set_num_threads sizes the OpenMP pool, but OpenBLAS (under torch's dense layers) sizes its
# own pool when it loads: give both the bench's thread count before torch is imported.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[variable] = str(threads_from_argv())
# GNU OpenMP's workers spin at each barrier by default; when another program holds a core, the
# spinning worker waits for a descheduled one and a step can take tens of times longer. Passive
# waiting unless the caller chose: on a quiet machine, try OMP_WAIT_POLICY=ACTIVE as well.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    import torch  # noqa: E402
except ImportError as error:  # dagger bench shows this line as the reason it has no BLAS figure
    sys.exit(f"torch_bench: PyTorch is not installed for {sys.executable} ({error}); "
             "scripts/install-bench-deps.sh installs it")
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def dense(k, units):
    layer = nn.Linear(k, units)
    nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def conv(c, filters, kernel):
    layer = nn.Conv2d(c, filters, kernel, padding=kernel // 2)
    # He-uniform: U(-l, l), l = sqrt(6 / fan_in), fan_in = c * kernel^2
    nn.init.kaiming_uniform_(layer.weight, a=0, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


def batchnorm(channels, dims):
    cls = nn.BatchNorm2d if dims == 4 else nn.BatchNorm1d
    return cls(channels, eps=1e-3, momentum=0.01)


class Mlp1(nn.Module):
    """Dense(units) -> ReLU -> Dropout(p) -> Dense(10)."""

    def __init__(self, units, p):
        super().__init__()
        self.hidden, self.drop, self.out = dense(784, units), nn.Dropout(p), dense(units, 10)

    def forward(self, x):
        return self.out(self.drop(F.relu(self.hidden(x.flatten(1)))))


class Mlp2(nn.Module):
    """Dense(h1) -> [BN] -> ReLU -> Dropout(p1) -> Dense(h2) -> [BN] -> ReLU -> Dropout(p2) -> Dense(10)."""

    def __init__(self, h1, h2, p1, p2, bn):
        super().__init__()
        layers, k = [], 784
        for units, p in ((h1, p1), (h2, p2)):
            layers.append(dense(k, units))
            if bn:
                layers.append(batchnorm(units, 2))
            layers += [nn.ReLU(), nn.Dropout(p)]
            k = units
        self.body, self.out = nn.Sequential(*layers), dense(k, 10)

    def forward(self, x):
        return self.out(self.body(x.flatten(1)))


def head(features, h, p):
    return nn.Sequential(nn.Flatten(), dense(features, h), nn.ReLU(), nn.Dropout(p), dense(h, 10))


class Cnn(nn.Module):
    """blocks x [Conv3x3(32*2^i) -> [BN] -> ReLU -> MaxPool2 -> Dropout(q)] -> head."""

    def __init__(self, blocks, bn, p, q, h):
        super().__init__()
        layers, c, side = [], 1, 28
        for i in range(blocks):
            layers.append(conv(c, 32 << i, 3))
            if bn:
                layers.append(batchnorm(32 << i, 4))
            layers += [nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(q)]
            c, side = 32 << i, side // 2
        self.body, self.head = nn.Sequential(*layers), head(c * side * side, h, p)

    def forward(self, x):
        return self.head(self.body(x))


class ResStage(nn.Module):
    """relu(bn(conv(x))) -> bn(conv(.)) + skip (1x1 projection when the channels change) -> ReLU -> MaxPool2 -> Dropout(q)."""

    def __init__(self, c, filters, q):
        super().__init__()
        self.conv1, self.bn1 = conv(c, filters, 3), batchnorm(filters, 4)
        self.conv2, self.bn2 = conv(filters, filters, 3), batchnorm(filters, 4)
        self.project = conv(c, filters, 1) if c != filters else None
        self.drop = nn.Dropout(q)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        y = y + (self.project(x) if self.project is not None else x)
        return self.drop(F.max_pool2d(F.relu(y), 2))


class ResCnn(nn.Module):
    def __init__(self, q=0.25, h=256, p=0.5):
        super().__init__()
        stages, c, side = [], 1, 28
        for filters in (32, 64, 128):
            stages.append(ResStage(c, filters, q))
            c, side = filters, side // 2
        self.body, self.head = nn.Sequential(*stages), head(c * side * side, h, p)

    def forward(self, x):
        return self.head(self.body(x))


MODELS = {
    "shallow": lambda: nn.Sequential(nn.Flatten(), dense(784, 10)),
    "mlp512": lambda: Mlp1(512, 0.2),
    "mlp2048": lambda: Mlp2(2048, 512, 0.2, 0.4, False),
    "cnn3": lambda: Cnn(3, True, 0.5, 0.25, 256),
    "rescnn": lambda: ResCnn(),
}


def timed(step, batch, warmup, steps, repeats):
    for _ in range(warmup):
        step()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        runs.append(batch * steps / (time.perf_counter() - t0))
    return {"images_per_sec_median": statistics.median(runs), "images_per_sec_runs": runs}


def make_optimizer(name, parameters, nesterov=False):
    """The training step's optimizer, as `dagger bench --optimizer NAME [--nesterov]` builds it."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=1e-3)
    if name == "momentum":
        return torch.optim.SGD(parameters, lr=1e-3, momentum=0.9, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-7, weight_decay=0.0)
    return torch.optim.Adam(parameters, lr=1e-3, betas=(0.9, 0.999), eps=1e-7)


def bench(name, args):
    torch.manual_seed(args.seed)
    model = MODELS[name]()
    x = torch.rand(args.batch, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch,))
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.nesterov)

    def autocast():
        if args.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(x), labels)
        loss.backward()
        optimizer.step()

    def inference_step():
        with torch.inference_mode(), autocast():
            F.softmax(model(x), dim=1)

    model.train()
    train = timed(train_step, args.batch, args.warmup, args.steps, args.repeats)
    model.eval()
    inference = timed(inference_step, args.batch, args.warmup, args.steps, args.repeats)
    return {"model": name, "batch": args.batch, "threads": args.threads, "train": train, "inference": inference}


def blas_name():
    """The BLAS library this process has loaded (Debian's torch says BLAS_INFO=generic and gets
    libblas.so.3 from the alternatives: libopenblasp-r0.3.21.so with libopenblas0-pthread), else
    what torch's build says."""
    try:
        with open("/proc/self/maps") as maps:
            loaded = {os.path.basename(line.split()[-1]) for line in maps if "openblas" in line.lower()}
        libraries = sorted(name for name in loaded if name.startswith("libopenblas"))
        if libraries:
            return libraries[0]
    except OSError:
        pass
    for item in torch.__config__.show().replace("\n", ",").split(","):
        if item.strip().startswith("BLAS_INFO="):
            return item.strip()
    return "unknown"


def sgemm(n, threads):
    """GFLOP/s of torch.mm on n x n float32 matrices: the best call within the budget."""
    generator = torch.Generator().manual_seed(1)
    a = torch.rand(n, n, generator=generator) * 2 - 1
    b = torch.rand(n, n, generator=generator) * 2 - 1
    c = torch.mm(a, b)  # warm the caches, the pages and the BLAS's thread pool
    best, calls, t0 = float("inf"), 0, time.perf_counter()
    while calls < 3 or (time.perf_counter() - t0 < 0.4 and calls < 50):
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - start)
        calls += 1
    return {"n": n, "threads": threads, "calls": calls, "gflops": 2.0 * n ** 3 / best * 1e-9}


# glibc's malloc gives the top of its heap back to the system once more than M_TRIM_THRESHOLD is
# free there, and serves blocks over M_MMAP_THRESHOLD by mmap; a training step frees and
# allocates megabytes of tensors, so under the defaults each step can fault its memory in again.
# Both thresholds also adapt to the largest block freed so far, so a model timed after a larger
# one ran faster than the same model timed alone (measured: PyTorch's mlp512 training 1.5x faster
# after cnn3 in the same process). Raised here once, for every model alike.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEPT_HEAP_BYTES, MMAP_FROM_BYTES = 1 << 30, 32 << 20  # glibc accepts at most 32 MiB for the latter


def keep_heap():
    """Raises glibc's trim and mmap thresholds; returns what was set, or why not."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        done = libc.mallopt(M_TRIM_THRESHOLD, KEPT_HEAP_BYTES) == 1 and \
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_FROM_BYTES) == 1
    except (OSError, AttributeError) as error:
        return {"not_set": str(error)}
    if not done:
        return {"not_set": f"mallopt refused the thresholds ({name})"}
    return {"trim_threshold": KEPT_HEAP_BYTES, "mmap_threshold": MMAP_FROM_BYTES}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=" | ".join(MODELS))
    parser.add_argument("--sgemm", type=int, metavar="N", help="time torch.mm of N x N matrices instead of models")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                        help="bf16: the forward passes under torch.autocast on the CPU in bfloat16")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc thresholds as they are (see keep_heap)")
    parser.add_argument("--optimizer", choices=["sgd", "momentum", "adam", "adamw"], default="adam",
                        help="the training step's optimizer (see make_optimizer)")
    parser.add_argument("--nesterov", action="store_true", help="--optimizer momentum: with Nesterov's look-ahead")
    args = parser.parse_args()
    if args.nesterov and args.optimizer != "momentum":
        parser.error(f"--nesterov applies to --optimizer momentum, not {args.optimizer}")
    malloc = {"default": True} if args.default_malloc else keep_heap()
    if args.sgemm is not None:
        if args.models or args.sgemm < 1 or args.threads < 1:
            parser.error("--sgemm takes no models, and N and --threads must be at least 1")
        torch.set_num_threads(args.threads)
        figure = sgemm(args.sgemm, args.threads)  # first: it loads the BLAS
        print(json.dumps({"torch": torch.__version__, "blas": blas_name(),
                          "env": {v: os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")},
                          "malloc": malloc, "sgemm": figure}), flush=True)
        return
    if not args.models:
        parser.error("name at least one model, or pass --sgemm N")
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)} (valid: {', '.join(MODELS)})")
    if min(args.batch, args.threads, args.steps, args.repeats) < 1 or args.warmup < 0:
        parser.error("--batch, --threads, --steps and --repeats must be at least 1, --warmup at least 0")
    torch.set_num_threads(args.threads)
    results = []
    for name in args.models:
        print(f"torch_bench: {name}", file=sys.stderr)
        results.append(bench(name, args))
    print(json.dumps({
        "torch": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "threads": torch.get_num_threads(),
        "env": {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")},
        "config": vars(args),
        "malloc": malloc,
        "models": results,
    }))


if __name__ == "__main__":
    main()
