"""gradcheck against a plain loop of central differences over the same parameters, measured in the same run.

(1) full gradcheck of the 650-parameter softmax regression (64-10) on 200 digits in float64: the whole
    gradient, two forward passes per parameter. Compared with the plain loop `for each parameter: perturb,
    forward, perturb, forward` (a) over the same engine forward, which isolates what the checker adds
    (target within 1.2x; PyTorch's gradcheck measures about 2x on the same work), and (b) over a hand-written
    numpy forward, which adds the engine's per-op overhead to the picture.
(2) fast mode (uᵀJv, two forward passes per parameter tensor) on the 64-128-10 ReLU MLP (9,610 parameters)
    on 64 digits, against the same plain loops over all 9,610 parameters. Target: under 50 ms.
"""

import dataclasses

import numpy as np
from bench_engine import median_times
from threadpoolctl import threadpool_limits

from tinygrad_sm.cases import MODEL_CASES
from tinygrad_sm.gradcheck import gradcheck, model_fn

EPS = 1e-6
SAMPLES = 200
MLP_SAMPLES = 64


def plain_central_differences(loss, arrays):
    """The plain loop: every element of every array, (loss(x + eps) - loss(x - eps)) / 2 eps."""
    gradients = []
    for array in arrays:
        gradient = np.empty(array.size)
        flat = array.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + EPS
            plus = loss()
            flat[j] = original - EPS
            minus = loss()
            flat[j] = original
            gradient[j] = (plus - minus) / (2 * EPS)
        gradients.append(gradient)
    return gradients


def numpy_loss(X, y, arrays):
    """Mean softmax cross-entropy of the relu network whose (weight, bias) pairs are `arrays`, in plain numpy."""
    h = X
    for layer in range(0, len(arrays), 2):
        h = h @ arrays[layer].T + arrays[layer + 1]
        if layer + 2 < len(arrays):
            h = np.maximum(h, 0)
    shifted = h - h.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(y)), y].mean()


def setup(case):
    """The case's model in float64 on its digits: (fn, params, plain loop over fn, plain loop over numpy)."""
    model, loss_fn = case.build(dtype=np.float64)
    fn, params = model_fn(model, loss_fn)
    from tinygrad_sm.data import load_digits

    X, _, y, _ = load_digits()
    X, y = X[: case.n_samples].astype(np.float64), y[: case.n_samples]
    arrays = [p.data for p in params]

    def engine_loss():
        return float(fn(*params).data)

    def plain_engine():
        from tinygrad_sm import no_grad

        with no_grad():
            return plain_central_differences(engine_loss, arrays)

    def plain_numpy():
        return plain_central_differences(lambda: numpy_loss(X, y, arrays), arrays)

    return fn, params, plain_engine, plain_numpy


def ratio(checked, plain):
    """checked / plain as "1.04x", or "1/1300" when the check is far cheaper."""
    return f"{checked / plain:.2f}x" if checked / plain >= 0.01 else f"1/{plain / checked:.0f}"


def main():
    softmax = dataclasses.replace(MODEL_CASES[0], n_samples=SAMPLES)
    mlp_case = next(case for case in MODEL_CASES if case.kind == "mlp")
    mlp = dataclasses.replace(mlp_case, name="MLP 64-128-10 (relu)", sizes=(64, 128, 10), n_samples=MLP_SAMPLES)
    rows = []
    with threadpool_limits(1):
        fn, params, plain_engine, plain_numpy = setup(softmax)
        count = sum(p.size for p in params)
        report = gradcheck(fn, params, eps=EPS)
        assert report.ok, str(report)
        numpy_grads = plain_numpy()
        assert np.allclose(np.concatenate(numpy_grads), np.concatenate(plain_engine()), atol=1e-8)
        full, engine_loop, numpy_loop = median_times(
            [lambda: gradcheck(fn, params, eps=EPS), plain_engine, plain_numpy], repeats=7
        )
        name = f"full gradcheck, {softmax.name}, {count} params, {SAMPLES} digits"
        rows.append((name, full, engine_loop, numpy_loop, "<= 1.2x"))

        fn, params, plain_engine, plain_numpy = setup(mlp)
        count = sum(p.size for p in params)
        assert gradcheck(fn, params, fast=True).ok
        fast = median_times([lambda: gradcheck(fn, params, fast=True)], repeats=21)[0]
        engine_loop, numpy_loop = median_times([plain_engine, plain_numpy], repeats=1)
        name = f"fast gradcheck, {mlp.name}, {count} params, {MLP_SAMPLES} digits"
        rows.append((name, fast, engine_loop, numpy_loop, "< 50 ms"))

    print(f"float64, eps={EPS:g}, one thread; plain loop = central differences element by element")
    print(f"| {'check':<66} | {'gradcheck':>10} | {'plain loop, engine fwd':>22} | {'ratio':>7} "
          f"| {'plain loop, numpy fwd':>21} | {'ratio':>7} | target  |")
    print(f"|{'-' * 68}|{'-' * 12}|{'-' * 24}|{'-' * 9}|{'-' * 23}|{'-' * 9}|---------|")
    for name, checked, engine_loop, numpy_loop, target in rows:
        print(f"| {name:<66} | {checked * 1e3:>7.1f} ms | {engine_loop * 1e3:>19.1f} ms "
              f"| {ratio(checked, engine_loop):>7} | {numpy_loop * 1e3:>18.1f} ms | {ratio(checked, numpy_loop):>7} "
              f"| {target:<7} |")


if __name__ == "__main__":
    main()
