"""Higher order: one Hessian-vector product against one gradient, and a full Hessian by autograd against finite
differences.

(a) the 64-128-10 tanh MLP's mean softmax-cross-entropy on 64 digits, float64: the time of one `autograd.hvp`
over the time of one forward + backward, both measured here (medians of interleaved calls, BLAS on one thread as
in bench_engine); PyTorch's same ratio beside it when torch is installed. Target: at most 3x.
(b) the 64-10 softmax regression's Hessian on 200 digits, float64: `autograd.hessian` against the finite-difference
`gradcheck.hessian`, each timed and compared with the Kronecker formula H = (1/N) Σ_n x_n x_nᵀ ⊗ (diag(p_n) - p_n p_nᵀ).
"""

import time

import numpy as np
from bench_engine import median_times
from threadpoolctl import threadpool_limits

from tinygrad_sm import Tensor, autograd, gradcheck
from tinygrad_sm import functional as F
from tinygrad_sm.data import load_digits


def mlp_weights(rng):
    sizes = (64, 128, 10)
    return [rng.standard_normal((n_in, n_out)) / np.sqrt(n_in) for n_in, n_out in zip(sizes, sizes[1:])]


def ours_ratio(images, labels, weights, vectors, repeats):
    def loss(first, second):
        return F.softmax_cross_entropy((Tensor(images) @ first).tanh() @ second, labels)

    def gradient():
        leaves = [Tensor(w, requires_grad=True) for w in weights]
        loss(*leaves).backward()

    def hessian_vector():
        autograd.hvp(loss, tuple(Tensor(w) for w in weights), tuple(Tensor(v) for v in vectors))

    hvp_seconds, gradient_seconds = median_times([hessian_vector, gradient], repeats)
    return hvp_seconds / gradient_seconds


def torch_ratio(images, labels, weights, vectors, repeats):
    try:
        import torch
    except ImportError:
        return None
    features, targets = torch.tensor(images), torch.tensor(labels)

    def loss(first, second):
        return torch.nn.functional.cross_entropy(torch.tanh(features @ first) @ second, targets)

    def gradient():
        leaves = [torch.tensor(w, requires_grad=True) for w in weights]
        loss(*leaves).backward()

    def hessian_vector():
        torch.autograd.functional.hvp(
            loss, tuple(torch.tensor(w) for w in weights), tuple(torch.tensor(v) for v in vectors)
        )

    hvp_seconds, gradient_seconds = median_times([hessian_vector, gradient], repeats)
    return hvp_seconds / gradient_seconds


def kronecker_hessian(images, labels, weight):
    logits = images @ weight
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    blocks = [np.kron(np.outer(x, x), np.diag(p) - np.outer(p, p)) for x, p in zip(images, probabilities)]
    return sum(blocks) / len(images)


def hessian_rows(images, labels, weight):
    def loss(w):
        return F.softmax_cross_entropy(Tensor(images) @ w, labels)

    exact = kronecker_hessian(images, labels, weight)
    size = weight.size
    start = time.perf_counter()
    ours = autograd.hessian(loss, Tensor(weight)).data.reshape(size, size)
    ours_seconds = time.perf_counter() - start
    start = time.perf_counter()
    differences = gradcheck.hessian(loss, weight).reshape(size, size)
    differences_seconds = time.perf_counter() - start
    return [
        ("autograd.hessian", ours_seconds, np.abs(ours - exact).max()),
        ("gradcheck.hessian (finite differences)", differences_seconds, np.abs(differences - exact).max()),
    ]


def main():
    rng = np.random.default_rng(0)
    X, _, y, _ = load_digits()
    images, labels = X[:64].astype(np.float64), np.asarray(y[:64])
    weights = mlp_weights(rng)
    vectors = [rng.standard_normal(w.shape) for w in weights]
    with threadpool_limits(1):
        ours = ours_ratio(images, labels, weights, vectors, repeats=101)
        theirs = torch_ratio(images, labels, weights, vectors, repeats=101)
    print("(a) one HVP / one gradient, 64-128-10 tanh MLP, batch 64, float64 (target <= 3x)")
    print(f"  tinygrad_sm {ours:6.2f}x   torch {'not installed' if theirs is None else f'{theirs:6.2f}x'}")
    print("(b) Hessian of the 64-10 softmax regression (640 x 640), 200 digits, float64, against the Kronecker formula")
    regression_images, regression_labels = X[:200].astype(np.float64), np.asarray(y[:200])
    weight = rng.standard_normal((64, 10)) * 0.01
    for name, seconds, error in hessian_rows(regression_images, regression_labels, weight):
        print(f"  {name:<40}{seconds:8.2f} s   max abs error {error:.2e}")


if __name__ == "__main__":
    main()
