"""The registry of op cases: op, input shapes, value domain. It drives the parametrised op tests, the
gradient-check command's built-in suite and the benchmarks, so a new op is added here once and checked
everywhere (minitorch's idea)."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinygrad_sm import data, nn, ops
from tinygrad_sm import functional as F
from tinygrad_sm.tensor import Tensor

DOMAINS = ("real", "positive", "nonzero", "distinct", "probability")


@dataclass(frozen=True)
class OpCase:
    """`fn(*tensors)` exercises the Function named `op` on inputs of `shapes`, drawn from `domains`.

    Domains: "real" (standard normal), "positive" (log, a pow base), "nonzero" (a divisor, relu away
    from its kink), "distinct" (max without ties), "probability" (a target strictly inside (0, 1)).
    """

    name: str
    op: str
    fn: Callable
    shapes: tuple
    domains: tuple = ()

    def inputs(self, seed=0, dtype=np.float64):
        rng = np.random.default_rng(seed)
        domains = self.domains or ("real",) * len(self.shapes)
        return [draw_values(rng, shape, domain).astype(dtype) for shape, domain in zip(self.shapes, domains)]


def draw_values(rng, shape, domain):
    if domain == "real":
        return rng.standard_normal(shape)
    if domain == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if domain == "nonzero":
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 2.0, shape)
    if domain == "distinct":
        count = int(np.prod(shape))
        return (rng.permutation(count) * 0.25 + rng.uniform(0, 0.05, count)).reshape(shape) - count * 0.125
    if domain == "probability":
        return rng.uniform(0.05, 0.95, shape)
    raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")


_LABELS = np.array([0, 2, 1, 2])
_SOFT_TARGETS = np.random.default_rng(7).dirichlet(np.ones(3), size=4)
_BINARY_TARGETS = np.array([0.0, 1.0, 1.0, 0.0, 0.3])

OP_CASES = (
    OpCase("add (broadcast)", "Add", lambda a, b: a + b, ((3, 1, 4), (2, 4))),
    OpCase("sub (broadcast)", "Sub", lambda a, b: a - b, ((2, 3), (3,))),
    OpCase("mul (broadcast)", "Mul", lambda a, b: a * b, ((4, 1), (1, 5))),
    OpCase("div (broadcast)", "Div", lambda a, b: a / b, ((2, 3), (2, 1)), ("real", "nonzero")),
    OpCase("pow (scalar exponent)", "Pow", lambda a: a**3, ((3, 4),)),
    OpCase("pow (tensor exponent)", "Pow", lambda a, b: a**b, ((2, 3), (3,)), ("positive", "real")),
    OpCase("neg", "Neg", lambda a: -a, ((3, 2),)),
    OpCase("matmul 2-D", "MatMul", lambda a, b: a @ b, ((3, 4), (4, 5))),
    OpCase("matmul 1-D @ 2-D", "MatMul", lambda a, b: a @ b, ((4,), (4, 3))),
    OpCase("matmul 2-D @ 1-D", "MatMul", lambda a, b: a @ b, ((3, 4), (4,))),
    OpCase("matmul 1-D @ 1-D", "MatMul", lambda a, b: a @ b, ((4,), (4,))),
    OpCase("matmul batched (broadcast)", "MatMul", lambda a, b: a @ b, ((2, 3, 4), (1, 4, 2))),
    OpCase("linear", "Linear", lambda x, w, b: F.linear(x, w, b), ((5, 3), (4, 3), (4,))),
    OpCase("linear (no bias, batched)", "Linear", lambda x, w: F.linear(x, w), ((2, 5, 3), (4, 3))),
    OpCase("linear (1-D input)", "Linear", lambda x, w, b: F.linear(x, w, b), ((3,), (4, 3), (4,))),
    OpCase("exp", "Exp", lambda a: a.exp(), ((3, 4),)),
    OpCase("log", "Log", lambda a: a.log(), ((3, 4),), ("positive",)),
    OpCase("tanh", "Tanh", lambda a: a.tanh(), ((3, 4),)),
    OpCase("sigmoid", "Sigmoid", lambda a: a.sigmoid(), ((3, 4),)),
    OpCase("relu", "Relu", lambda a: a.relu(), ((3, 4),), ("nonzero",)),
    OpCase("sum (all)", "Sum", lambda a: a.sum(), ((3, 4),)),
    OpCase("sum (axis 1, keepdims)", "Sum", lambda a: a.sum(axis=1, keepdims=True), ((3, 4),)),
    OpCase("sum (axes 0 and 2)", "Sum", lambda a: a.sum(axis=(0, 2)), ((2, 3, 4),)),
    OpCase("mean (all)", "Mean", lambda a: a.mean(), ((3, 4),)),
    OpCase("mean (axis -1)", "Mean", lambda a: a.mean(axis=-1), ((2, 3, 4),)),
    OpCase("max (all)", "Max", lambda a: a.max(), ((3, 4),), ("distinct",)),
    OpCase("max (axis 0, keepdims)", "Max", lambda a: a.max(axis=0, keepdims=True), ((3, 4),), ("distinct",)),
    OpCase("reshape", "Reshape", lambda a: a.reshape(4, 3), ((2, 6),)),
    OpCase("transpose (axes)", "Transpose", lambda a: a.transpose(2, 0, 1), ((2, 3, 4),)),
    OpCase("transpose (.T)", "Transpose", lambda a: a.T, ((3, 4),)),
    OpCase("getitem (slices)", "GetItem", lambda a: a[1:, ::2], ((3, 4),)),
    OpCase("getitem (repeated indices)", "GetItem", lambda a: a[[0, 2, 0, 0]], ((3, 4),)),
    OpCase("getitem (boolean mask)", "GetItem", lambda a: a[a.data > 0], ((3, 4),)),
    OpCase("broadcast_to", "BroadcastTo", lambda a: ops.broadcast_to(a, (2, 3, 4)), ((3, 1),)),
    OpCase("add_at (repeated indices)", "AddAt", lambda g: ops.add_at(g, (5, 2), np.array([0, 3, 0, 0])),
           ((4, 2),)),
    OpCase("add_at (slices)", "AddAt", lambda g: ops.add_at(g, (3, 4), (slice(1, None), slice(None, None, 2))),
           ((2, 2),)),
    OpCase("stack", "Stack", lambda a, b, c: ops.Stack.apply(a, b, c), ((2, 3), (2, 3), (2, 3))),
    OpCase("softmax (axis -1)", "Softmax", lambda a: a.softmax(axis=-1), ((3, 4),)),
    OpCase("softmax (axis 0)", "Softmax", lambda a: a.softmax(axis=0), ((3, 4),)),
    OpCase("log_softmax", "LogSoftmax", lambda a: a.log_softmax(axis=-1), ((3, 4),)),
    OpCase("logsumexp", "LogSumExp", lambda a: a.logsumexp(axis=1), ((3, 4),)),
    OpCase("softmax_cross_entropy (labels)", "SoftmaxCrossEntropy",
           lambda z: F.softmax_cross_entropy(z, _LABELS), ((4, 3),)),
    OpCase("softmax_cross_entropy (soft targets)", "SoftmaxCrossEntropy",
           lambda z: F.softmax_cross_entropy(z, _SOFT_TARGETS), ((4, 3),)),
    OpCase("softmax_cross_entropy (sum)", "SoftmaxCrossEntropy",
           lambda z: F.softmax_cross_entropy(z, _LABELS, reduction="sum"), ((4, 3),)),
    OpCase("softmax_cross_entropy (none)", "SoftmaxCrossEntropy",
           lambda z: F.softmax_cross_entropy(z, _LABELS, reduction="none"), ((4, 3),)),
    OpCase("binary_cross_entropy_with_logits", "BinaryCrossEntropyWithLogits",
           lambda z: F.binary_cross_entropy_with_logits(z, _BINARY_TARGETS), ((5,),)),
    OpCase("binary_cross_entropy_with_logits (targets too, none)", "BinaryCrossEntropyWithLogits",
           lambda z, y: F.binary_cross_entropy_with_logits(z, y, reduction="none"), ((5,), (5,)),
           ("real", "probability")),
)


@dataclass(frozen=True)
class ModelCase:
    """A built-in model's loss on the first `n_samples` training digits.

    `kind`: "softmax" (SoftmaxRegression, 10 classes), "logistic" (LogisticRegression, 4 vs 9) or "mlp"
    (a relu MLP of `sizes`); the loss is softmax_cross_entropy, or binary_cross_entropy_with_logits for 4 vs 9.
    """

    name: str
    kind: str
    sizes: tuple = ()
    n_samples: int = 32

    def build(self, seed=0, dtype=np.float64):
        """(model, loss_fn) with loss_fn(model) the scalar loss; weights drawn from `seed`."""
        rng = np.random.default_rng(seed)
        if self.kind == "logistic":
            X, _, y, _ = data.load_binary_digits(seed=seed)
            model = nn.LogisticRegression(X.shape[1], rng=rng, dtype=dtype)
            loss = F.binary_cross_entropy_with_logits
        elif self.kind in ("softmax", "mlp"):
            X, _, y, _ = data.load_digits(seed=seed)
            if self.kind == "softmax":
                model = nn.SoftmaxRegression(X.shape[1], 10, rng=rng, dtype=dtype)
            else:
                model = nn.MLP(list(self.sizes), rng=rng, dtype=dtype)
            loss = F.softmax_cross_entropy
        else:
            raise ValueError(f"ModelCase {self.name!r}: kind must be softmax, logistic or mlp, got {self.kind!r}")
        features, targets = Tensor(X[: self.n_samples].astype(dtype)), y[: self.n_samples]
        return model, lambda m: loss(m(features), targets)


MODEL_CASES = (
    ModelCase("softmax regression 64-10", "softmax"),
    ModelCase("logistic regression 64-1 (4 vs 9)", "logistic"),
    ModelCase("MLP 64-32-10 (relu)", "mlp", (64, 32, 10)),
)
