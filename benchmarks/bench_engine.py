"""The engine against hand-written numpy, measured in the same run.

(1) per-op overhead: forward + backward of a chain of 1,000 elementwise ops on a 1-element tensor, the constants
    Tensors; (1b) the chain as users write it, `x = x * 1.0001 + 0.0001` with Python numbers, beside the same with
    Tensor constants;
(2) one training step (forward, backward, SGD update) of a 64-128-10 ReLU MLP with mean softmax
    cross-entropy, float32, batch 64; (3) the same at batch 1024, hidden 512. Each both through `nn` (one fused
    Linear node per layer) and written by hand as users write it, `(x @ W1 + b1).relu() @ W2 + b2`.
torch (rows 1-3) and micrograd (row 1; it has no matrices) are added when they happen to be installed (they are
not dependencies).
"""

import importlib
import importlib.util
import os
import random
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from tinygrad_sm import Tensor, nn, no_grad, optim
from tinygrad_sm import functional as F
from tinygrad_sm.cases import OP_CASES

CHAIN = 1000


def median_times(functions, repeats):
    """Median seconds per call of each function, calls interleaved so that machine noise hits all alike, in a
    shuffled order each round so that no row always runs in the caches another row left behind."""
    for fn in functions:
        fn()
    times = [[] for _ in functions]
    order = list(range(len(functions)))
    rng = random.Random(0)
    for _ in range(repeats):
        rng.shuffle(order)
        for index in order:
            started = time.perf_counter()
            functions[index]()
            times[index].append(time.perf_counter() - started)
    return [statistics.median(spent) for spent in times]


def rows_against_numpy(numpy_fn, candidates, repeats):
    """(name, seconds per call, ratio) for numpy and each (name, function) of `candidates`: each candidate timed
    interleaved with the numpy function in a pass of its own, its ratio against that pass's numpy time. One pass
    for all let PyTorch's step slow whatever ran after it: with its row beside ours, our batch-64 step measured
    1.69x numpy, 1.36x without it (its caches and thread pool; a warm-up call before each timed one gave 1.45x)."""
    rows = []
    for name, fn in candidates:
        numpy_seconds, seconds = median_times([numpy_fn, fn], repeats)
        if not rows:
            rows.append(("hand-written numpy", numpy_seconds, 1.0))
        rows.append((name, seconds, seconds / numpy_seconds))
    return rows


def chain_engine():
    x = Tensor(np.array([0.5]), requires_grad=True)
    factor = Tensor(np.array([1.0001]))
    y = x
    for _ in range(CHAIN):
        y = y * factor
    y.sum().backward()


def affine_chain_engine(constant):
    """`x = x * 1.0001 + 0.0001`, CHAIN times: 2 * CHAIN ops; `constant` makes each number an operand."""
    x = Tensor(np.array([0.5]), requires_grad=True)
    factor, shift = constant(1.0001), constant(0.0001)
    y = x
    for _ in range(CHAIN):
        y = y * factor + shift
    y.sum().backward()


def affine_chain_numpy():
    x = np.array([0.5])
    values = [x]
    for _ in range(CHAIN):
        values.append(values[-1] * 1.0001 + 0.0001)
    grad = np.ones(1)
    for _ in range(CHAIN):
        grad = grad * 1.0001


def chain_numpy():
    x = np.array([0.5])
    factor = np.array([1.0001])
    values = [x]
    for _ in range(CHAIN):
        values.append(values[-1] * factor)
    grad = np.ones(1)
    for _ in range(CHAIN):
        grad = grad * factor


def chain_micrograd(value_class):
    """micrograd works on Python floats: the same chain on scalars (its backward sorts the graph recursively)."""
    x = value_class(0.5)
    factor = value_class(1.0001)
    y = x
    for _ in range(CHAIN):
        y = y * factor
    y.backward()


def chain_torch(torch):
    x = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    factor = torch.tensor([1.0001], dtype=torch.float64)
    y = x
    for _ in range(CHAIN):
        y = y * factor
    y.sum().backward()


class NumpyMLP:
    """The same network, forward and backward written out by hand."""

    def __init__(self, model):
        self.params = [p.data.copy() for p in model.parameters()]

    def step(self, X, y, lr):
        w1, b1, w2, b2 = self.params
        hidden = X @ w1.T + b1
        relu = np.maximum(hidden, 0)
        logits = relu @ w2.T + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -log_probs[np.arange(len(y)), y].mean()
        grad_logits = np.exp(log_probs)
        grad_logits[np.arange(len(y)), y] -= 1
        grad_logits /= len(y)
        grad_w2 = grad_logits.T @ relu
        grad_b2 = grad_logits.sum(axis=0)
        grad_hidden = (grad_logits @ w2) * (hidden > 0)
        grad_w1 = grad_hidden.T @ X
        grad_b1 = grad_hidden.sum(axis=0)
        for param, grad in zip(self.params, (grad_w1, grad_b1, grad_w2, grad_b2)):
            param -= lr * grad
        return loss


def hand_written_step(model, X, y):
    """The same network as a user writes it without nn: weights (in, out), `(x @ W1 + b1).relu() @ W2 + b2`."""
    params = [Tensor(p.data.T.copy() if p.ndim == 2 else p.data.copy(), requires_grad=True) for p in model.parameters()]
    w1, b1, w2, b2 = params
    optimizer = optim.SGD(params, lr=0.01)

    def step():
        optimizer.zero_grad()
        x = Tensor(X)
        loss = F.softmax_cross_entropy((x @ w1 + b1).relu() @ w2 + b2, y)
        loss.backward()
        optimizer.step()

    return step


def training_step_rows(batch, hidden, repeats):
    rng = np.random.default_rng(0)
    X = rng.random((batch, 64), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    model = nn.MLP([64, hidden, 10], rng=rng)
    reference = NumpyMLP(model)
    hand_written = hand_written_step(model, X, y)
    optimizer = optim.SGD(model.parameters(), lr=0.01)

    def engine_step():
        optimizer.zero_grad()
        loss = F.softmax_cross_entropy(model(Tensor(X)), y)
        loss.backward()
        optimizer.step()

    candidates = [("tinygrad_sm (nn)", engine_step), ("tinygrad_sm (by hand)", hand_written)]
    torch = _optional("torch")
    if torch is not None:
        torch.set_num_threads(1)  # one thread, like BLAS for every other row
        net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
        sgd = torch.optim.SGD(net.parameters(), lr=0.01)
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)

        def torch_step():
            sgd.zero_grad()
            torch.nn.functional.cross_entropy(net(tX), ty).backward()
            sgd.step()

        candidates.append(("torch (eager, CPU)", torch_step))
    return lambda: reference.step(X, y, 0.01), candidates


def page_faults_per_call(fn, calls=20):
    """Minor page faults per call of `fn` (memory the allocator handed back to the system and touches again)."""
    fn()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        fn()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def _optional(name):
    return importlib.import_module(name) if importlib.util.find_spec(name) else None


def registry_rows(repeats):
    """Every case of the op registry: forward + backward against the same forward under no_grad."""
    rows = []
    for case in OP_CASES:
        inputs = case.inputs(dtype=np.float32)
        leaves = [Tensor(array, requires_grad=True) for array in inputs]
        constants = [Tensor(array) for array in inputs]

        def forward_backward(case=case, leaves=leaves):
            out = case.fn(*leaves)
            out.backward(np.ones(out.shape, dtype=out.dtype))

        def forward_only(case=case, constants=constants):
            with no_grad():
                case.fn(*constants)

        both, alone = median_times([forward_backward, forward_only], repeats)
        rows.append((case.name, both, alone))
    return rows


def main():
    print("BLAS limited to one thread for every row (two threads on two shared cores made timings erratic)")
    missing = [name for name in ("torch", "micrograd") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"not installed, so no rows for: {', '.join(missing)} (they are not dependencies)")
    print("(1) per-op overhead, chain of 1,000 multiplies on a 1-element tensor, forward + backward (target <= 5 us)")
    print(f"{'':24}{'us per op':>12}{'x numpy':>10}")
    chains = [("tinygrad_sm", chain_engine)]
    torch = _optional("torch")
    if torch is not None:
        chains.append(("torch (eager, CPU)", lambda: chain_torch(torch)))
    if _optional("micrograd") is not None:
        value_class = importlib.import_module("micrograd.engine").Value
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * CHAIN))  # micrograd's recursive topological sort
        chains.append(("micrograd (scalars)", lambda: chain_micrograd(value_class)))
    for name, seconds, ratio in rows_against_numpy(chain_numpy, chains, 100):
        print(f"{name:24}{seconds / CHAIN * 1e6:12.2f}{ratio:10.2f}")
    print("\n(1b) the chain as users write it, x = x * 1.0001 + 0.0001, 2,000 ops (target <= 5 us with Python numbers)")
    print(f"{'':24}{'us per op':>12}{'x numpy':>10}")
    affine = [("Python numbers", lambda: affine_chain_engine(float)),
              ("Tensor constants", lambda: affine_chain_engine(lambda value: Tensor(np.array([value]))))]
    for name, seconds, ratio in rows_against_numpy(affine_chain_numpy, affine, 100):
        print(f"{name:24}{seconds / (2 * CHAIN) * 1e6:12.2f}{ratio:10.2f}")
    steps = (("(2)", 64, 128, 1000, "1.5"), ("(3)", 1024, 512, 60, "1.1 (nn), 1.15 (by hand)"))
    for label, batch, hidden, repeats, target in steps:
        print(f"\n{label} training step, 64-{hidden}-10 ReLU MLP, mean softmax cross-entropy, float32, batch {batch} "
              f"(target <= {target}x numpy)")
        print_step_table(batch, hidden, repeats)
    print("\n(3b) (3) again in a fresh process whose malloc keeps freed memory (MALLOC_TRIM_THRESHOLD_ and\n"
          "    MALLOC_MMAP_THRESHOLD_ raised), a control: a step that needs much fresh heap has it trimmed and\n"
          "    faulted back in every step with glibc's defaults, and then (3) and (3b) differ")
    sys.stdout.flush()
    tuned = {**os.environ, "MALLOC_TRIM_THRESHOLD_": str(2**31), "MALLOC_MMAP_THRESHOLD_": str(2**30)}
    subprocess.run([sys.executable, __file__, "--large-step-only"], env=tuned, check=True)
    print("\n(4) every case of the op registry (tinygrad_sm/cases.py), float32, its small shapes")
    print(f"{'':56}{'fwd+bwd us':>12}{'fwd us':>10}{'x fwd':>8}")
    for name, both, alone in registry_rows(200):
        print(f"{name:56}{both * 1e6:12.1f}{alone * 1e6:10.1f}{both / alone:8.1f}")


def print_step_table(batch, hidden, repeats):
    print(f"{'':24}{'ms per step':>12}{'x numpy':>10}{'page faults per step':>22}")
    numpy_step, candidates = training_step_rows(batch, hidden, repeats)
    faults = [page_faults_per_call(fn) for fn in [numpy_step] + [fn for _, fn in candidates]]
    for (name, seconds, ratio), fault_count in zip(rows_against_numpy(numpy_step, candidates, repeats), faults):
        print(f"{name:24}{seconds * 1e3:12.3f}{ratio:10.2f}{fault_count:22.1f}")


if __name__ == "__main__":
    with threadpool_limits(1):
        if sys.argv[1:] == ["--large-step-only"]:
            print_step_table(1024, 512, 60)
        else:
            main()
