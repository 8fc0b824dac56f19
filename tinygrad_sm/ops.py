"""The primitive ops: one small Function each, forward on numpy arrays, backward on arrays or Tensors.

Each docstring gives the derivative in one line of math; `g` is the upstream gradient (grad_output).
A backward is written in operations numpy arrays and Tensors share (`*`, `@`, `.sum`, `.reshape`, `.mT`, the
helpers `exp`, `log`, `sigmoid`, `broadcast_to`, ... below): on arrays it is the fast first-order backward, on
Tensors (`create_graph`) the same lines record the gradient as a graph that can be differentiated again.
"""

import math

import numpy as np

from tinygrad_sm.function import Function


def unbroadcast(grad, shape):
    """Sum `grad` back to `shape`: first the extra leading axes, then (keepdims) every axis of size 1."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    size_one_axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if size_one_axes:
        grad = grad.sum(axis=size_one_axes, keepdims=True)
    return grad.reshape(shape)


def broadcasting(op_name, ufunc, a, b):
    """ufunc(a, b) with numpy broadcasting, or a ValueError that names the op and both shapes."""
    try:
        return ufunc(a, b)
    except ValueError:
        raise ValueError(
            f"{op_name}: shapes {a.shape} and {b.shape} do not broadcast; each trailing axis must match or be 1"
        ) from None


def normalize_axes(axis, ndim, op_name="axis"):
    """`axis` (None, int or tuple, negatives allowed) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if len({a % max(ndim, 1) for a in axes}) != len(axes):
        raise ValueError(f"{op_name}: axis {axis} names an axis twice; expected distinct axes")
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(
                f"{op_name}: axis {a} is out of range for a tensor with {ndim} dimensions; "
                f"expected -{ndim} <= axis < {ndim}"
            )
    return tuple(sorted(a % max(ndim, 1) for a in axes))


def expand_reduced(grad, input_shape, axis, keepdims):
    """Broadcast the gradient of a reduction over `axis` back to the input's shape."""
    if not keepdims:
        axes = normalize_axes(axis, len(input_shape))
        grad = grad.reshape(tuple(1 if i in axes else n for i, n in enumerate(input_shape)))
    return broadcast_to(grad, input_shape)


# ---- functions of an array or a Tensor: numpy on arrays, the recorded op on Tensors (create_graph) ----

def exp(x):
    return np.exp(x) if isinstance(x, np.ndarray) else x.exp()


def log(x):
    return np.log(x) if isinstance(x, np.ndarray) else x.log()


def sigmoid(x):
    """σ(x) = 1 / (1 + exp(-x)) = exp(-log(1 + exp(-x))), without overflow in either tail."""
    return np.exp(-np.logaddexp(0, -x)) if isinstance(x, np.ndarray) else x.sigmoid()


def softmax(x, axis):
    if not isinstance(x, np.ndarray):
        return x.softmax(axis)
    exps = np.exp(x - x.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def log_softmax(x, axis):
    if not isinstance(x, np.ndarray):
        return x.log_softmax(axis)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def broadcast_to(x, shape):
    return np.broadcast_to(x, shape) if isinstance(x, np.ndarray) else BroadcastTo.apply(x, shape=shape)


def add_at(grad, shape, index):
    """Zeros of `shape` with `grad` added at `index` (repeated indices accumulate): the backward of x[index]."""
    if not isinstance(grad, np.ndarray):
        return AddAt.apply(grad, shape=shape, index=index)
    out = np.zeros(shape, dtype=grad.dtype)
    if _has_array_index(index):
        np.add.at(out, index, grad)
    else:
        out[index] = grad
    return out


def cast(x, dtype):
    return x.astype(dtype, copy=False) if isinstance(x, np.ndarray) else Cast.apply(x, dtype=dtype)


# ---- elementwise binary ops (numpy broadcasting; backward unbroadcasts) ----

class Add(Function):
    """d(a + b) = g, g"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a.shape, b.shape)
        return broadcasting("add", np.add, a, b)

    @staticmethod
    def backward(ctx, grad_output):
        a_shape, b_shape = ctx.saved_tensors
        grad_a = unbroadcast(grad_output, a_shape) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(grad_output, b_shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Sub(Function):
    """d(a - b) = g, -g"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a.shape, b.shape)
        return broadcasting("sub", np.subtract, a, b)

    @staticmethod
    def backward(ctx, grad_output):
        a_shape, b_shape = ctx.saved_tensors
        grad_a = unbroadcast(grad_output, a_shape) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad_output, b_shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Mul(Function):
    """d(a * b) = g * b, g * a"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return broadcasting("mul", np.multiply, a, b)

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        grad_a = unbroadcast(grad_output * b, a.shape) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(grad_output * a, b.shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    """d(a / b) = g / b, -g * a / b²"""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return broadcasting("div", np.divide, a, b)

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        grad_a = unbroadcast(grad_output / b, a.shape) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(-grad_output * a / (b * b), b.shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Pow(Function):
    """d(a ** b) = g * b * a^(b-1), g * a^b * log(a)   (the second needs a > 0)"""

    @staticmethod
    def forward(ctx, a, b):
        out = broadcasting("pow", np.power, a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        a, b, out = ctx.saved_tensors
        grad_a = None
        if ctx.needs_input_grad[0]:  # b a^(b-1) with the exponent 0 where b = 0: 0 also at a = 0, not 0 * inf
            grad_a = unbroadcast(grad_output * b * a ** (b - (b != 0)), a.shape)
        grad_b = unbroadcast(grad_output * out * log(a), b.shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class MatMul(Function):
    """d(a @ b) = g @ bᵀ, aᵀ @ g   (1-D operands promoted as numpy does, batch axes unbroadcast)"""

    @staticmethod
    def forward(ctx, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
        inner_a = a.shape[-1]
        inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if inner_a != inner_b:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} are not aligned: "
                f"the last axis of the first ({inner_a}) must equal the "
                f"{'only' if b.ndim == 1 else 'second-to-last'} axis of the second ({inner_b})"
            )
        ctx.save_for_backward(a, b)
        return broadcasting("matmul (batch axes)", np.matmul, a, b)

    @staticmethod
    def backward(ctx, grad_output):
        a, b = ctx.saved_tensors
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g = grad_output[..., None] if b.ndim == 1 else grad_output
        g = g[..., None, :] if a.ndim == 1 else g
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = unbroadcast(g @ b2.mT, a2.shape).reshape(a.shape)
        if ctx.needs_input_grad[1]:
            grad_b = unbroadcast(a2.mT @ g, b2.shape).reshape(b.shape)
        return grad_a, grad_b


class Linear(Function):
    """d(x Wᵀ + b) = g W, gᵀ x, Σ g   (gᵀ x and Σ g summed over every axis of x but the last): one node per layer"""

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        if weight.ndim != 2:
            raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape {weight.shape}")
        if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
            transposed = " (is the weight transposed?)" if x.ndim and x.shape[-1] == weight.shape[0] else ""
            raise ValueError(
                f"linear: a weight of shape {weight.shape} (out_features, in_features) expects inputs with "
                f"{weight.shape[1]} features in the last axis, got shape {x.shape}{transposed}"
            )
        if bias is not None and bias.shape != weight.shape[:1]:
            raise ValueError(f"linear: bias must have shape {weight.shape[:1]} (out_features,), got {bias.shape}")
        ctx.save_for_backward(x, weight)
        out = x @ weight.T
        if bias is None:
            return out
        if bias.dtype == out.dtype:
            out += bias  # the fresh product takes the bias in place: one array less
            return out
        return out + bias

    @staticmethod
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        grad_x = grad_output @ weight if ctx.needs_input_grad[0] else None
        if x.ndim != 2:  # every axis of x but the last as rows
            rows = math.prod(x.shape[:-1])
            grad_output, x = grad_output.reshape(rows, weight.shape[0]), x.reshape(rows, weight.shape[1])
        grad_weight = grad_output.T @ x if ctx.needs_input_grad[1] else None
        if len(ctx.needs_input_grad) == 2:  # no bias
            return grad_x, grad_weight
        return grad_x, grad_weight, grad_output.sum(axis=0) if ctx.needs_input_grad[2] else None


# ---- elementwise unary ops ----

class Neg(Function):
    """d(-x) = -g"""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad_output):
        return -grad_output


class Exp(Function):
    """d/dx exp(x) = exp(x)"""

    @staticmethod
    def forward(ctx, x):
        out = np.exp(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        return grad_output * out


class Log(Function):
    """d/dx log(x) = 1 / x"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output / x


class Tanh(Function):
    """d/dx tanh(x) = 1 - tanh²(x)"""

    @staticmethod
    def forward(ctx, x):
        out = np.tanh(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        return grad_output * (1 - out * out)


class Sigmoid(Function):
    """d/dx σ(x) = σ(x) (1 - σ(x))"""

    @staticmethod
    def forward(ctx, x):
        out = sigmoid(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        return grad_output * out * (1 - out)


class Relu(Function):
    """d/dx max(x, 0) = g where x > 0, else 0"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x > 0)
        return np.maximum(x, 0)

    @staticmethod
    def backward(ctx, grad_output):
        (positive,) = ctx.saved_tensors
        return grad_output * positive


# ---- reductions ----

class Sum(Function):
    """d/dx Σ x = g broadcast back over the summed axes"""

    @staticmethod
    def forward(ctx, x):
        normalize_axes(ctx.axis, x.ndim, ctx.op_name)
        ctx.save_for_backward(x.shape)
        return np.asarray(x.sum(axis=ctx.axis, keepdims=ctx.keepdims))

    @staticmethod
    def backward(ctx, grad_output):
        (shape,) = ctx.saved_tensors
        return expand_reduced(grad_output, shape, ctx.axis, ctx.keepdims)


class Mean(Function):
    """d/dx mean(x) = g / n broadcast back over the n averaged elements"""

    @staticmethod
    def forward(ctx, x):
        axes = normalize_axes(ctx.axis, x.ndim, ctx.op_name)
        count = math.prod(x.shape[a] for a in axes)
        ctx.save_for_backward(x.shape, count)
        if x.dtype.kind != "f" or x.dtype.itemsize < 4:  # ints, bools, float16: mean sums them in a wider dtype
            return np.asarray(x.mean(axis=ctx.axis, keepdims=ctx.keepdims))
        return np.asarray(x.sum(axis=ctx.axis, keepdims=ctx.keepdims) / count)  # ndarray.mean's sum and division

    @staticmethod
    def backward(ctx, grad_output):
        shape, count = ctx.saved_tensors
        return expand_reduced(grad_output / count, shape, ctx.axis, ctx.keepdims)


class Max(Function):
    """d/dx max(x) = g at the maximum; ties share it equally (g / number of tied maxima)"""

    @staticmethod
    def forward(ctx, x):
        normalize_axes(ctx.axis, x.ndim, ctx.op_name)
        out = x.max(axis=ctx.axis, keepdims=True)
        ctx.save_for_backward((x == out) | np.isnan(x))  # a NaN is the maximum numpy reports: it takes the gradient
        return np.asarray(out if ctx.keepdims else np.squeeze(out, axis=ctx.axis))

    @staticmethod
    def backward(ctx, grad_output):
        (is_max,) = ctx.saved_tensors
        share = (is_max / is_max.sum(axis=ctx.axis, keepdims=True)).astype(grad_output.dtype)
        return expand_reduced(grad_output, is_max.shape, ctx.axis, ctx.keepdims) * share


# ---- shape and indexing ----

class Reshape(Function):
    """d reshape(x) = g reshaped back to x's shape"""

    @staticmethod
    def forward(ctx, x):
        try:
            out = x.reshape(ctx.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} into {ctx.shape}") from None
        ctx.save_for_backward(x.shape)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (shape,) = ctx.saved_tensors
        return grad_output.reshape(shape)


class Transpose(Function):
    """d transpose(x, axes) = g transposed by the inverse permutation"""

    @staticmethod
    def forward(ctx, x):
        if ctx.axes is not None and normalize_axes(ctx.axes, x.ndim, "transpose") != tuple(range(x.ndim)):
            raise ValueError(
                f"transpose: axes {ctx.axes} are not a permutation of the {x.ndim} axes of a tensor of shape {x.shape}"
            )
        return np.transpose(x, ctx.axes)

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.axes is None:
            return grad_output.transpose()
        return grad_output.transpose(tuple(np.argsort([a % grad_output.ndim for a in ctx.axes])))


def _has_array_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, np.ndarray) for p in parts)


class GetItem(Function):
    """d x[index] = g scattered into zeros at index; repeated indices accumulate"""

    @staticmethod
    def forward(ctx, x):
        try:
            out = x[ctx.index]
        except IndexError as error:
            raise IndexError(f"indexing a tensor of shape {x.shape}: {error}") from None
        ctx.save_for_backward(x.shape)
        return np.asarray(out)

    @staticmethod
    def backward(ctx, grad_output):
        (shape,) = ctx.saved_tensors
        return add_at(grad_output, shape, ctx.index)


class BroadcastTo(Function):
    """d broadcast_to(x, shape) = g summed back to x's shape (unbroadcast)"""

    @staticmethod
    def forward(ctx, x):
        try:
            out = np.broadcast_to(x, ctx.shape)
        except ValueError:
            raise ValueError(f"broadcast_to: shape {x.shape} does not broadcast to {ctx.shape}") from None
        ctx.save_for_backward(x.shape)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (shape,) = ctx.saved_tensors
        return unbroadcast(grad_output, shape)


class AddAt(Function):
    """d add_at(g, shape, index) = g'[index]: zeros with g added at index, the backward of x[index] as an op"""

    @staticmethod
    def forward(ctx, grad):
        return add_at(grad, ctx.shape, ctx.index)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output[ctx.index]


class Stack(Function):
    """d stack(x₀, x₁, ...) = g[0], g[1], ...   (the inputs, of one shape, along a new first axis)"""

    @staticmethod
    def forward(ctx, *arrays):
        if len({a.shape for a in arrays}) > 1:
            raise ValueError(f"stack: every input must have the same shape, got {[a.shape for a in arrays]}")
        return np.stack(arrays)

    @staticmethod
    def backward(ctx, grad_output):
        return tuple(grad_output[i] for i in range(len(ctx.parents)))


class Cast(Function):
    """d x.astype(dtype) = g cast back to x's dtype"""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x.dtype)
        return x.astype(ctx.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (dtype,) = ctx.saved_tensors
        return cast(grad_output, dtype)


# ---- the softmax family (fused, stable: shifted by the max) ----

class Softmax(Function):
    """d softmax(x) = a ⊙ (g - Σ g ⊙ a), i.e. g times the Jacobian diag(a) - a aᵀ"""

    @staticmethod
    def forward(ctx, x):
        normalize_axes(ctx.axis, x.ndim, ctx.op_name)
        out = softmax(x, ctx.axis)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        return out * (grad_output - (grad_output * out).sum(axis=ctx.axis, keepdims=True))


class LogSoftmax(Function):
    """d log_softmax(x) = g - softmax(x) Σ g"""

    @staticmethod
    def forward(ctx, x):
        normalize_axes(ctx.axis, x.ndim, ctx.op_name)
        out = log_softmax(x, ctx.axis)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        (out,) = ctx.saved_tensors
        return grad_output - exp(out) * grad_output.sum(axis=ctx.axis, keepdims=True)


class LogSumExp(Function):
    """d/dx log Σ exp(x) = g * softmax(x)"""

    @staticmethod
    def forward(ctx, x):
        normalize_axes(ctx.axis, x.ndim, ctx.op_name)
        top = x.max(axis=ctx.axis, keepdims=True)
        top = np.where(np.isfinite(top), top, 0)
        exps = np.exp(x - top)
        sums = exps.sum(axis=ctx.axis, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):  # a row of -inf: log Σ = -inf, its softmax 0/0 = nan
            out = top + np.log(sums)
            ctx.save_for_backward(x, exps / sums)  # softmax from the shifted exps: exp(x - out) loses out's rounding
        return np.asarray(out if ctx.keepdims else np.squeeze(out, axis=ctx.axis))

    @staticmethod
    def backward(ctx, grad_output):
        x, probabilities = ctx.saved_tensors
        if probabilities is None:  # create_graph: the softmax again, from x as a Tensor in the graph
            probabilities = softmax(x, ctx.axis)
        return expand_reduced(grad_output, x.shape, ctx.axis, ctx.keepdims) * probabilities


def _reduce(losses, reduction):
    if reduction == "mean":  # the sum over the count, as ndarray.mean computes it, without its Python-level wrapper
        return np.asarray(losses.sum() / losses.size, dtype=losses.dtype)
    if reduction == "sum":
        return np.asarray(losses.sum(), dtype=losses.dtype)
    return losses


def _scale_for_reduction(grad_output, reduction, count):
    """The per-sample factor the reduction applied: g / N for mean, g for sum, g[i] for none."""
    if reduction == "mean":
        return grad_output / count
    if reduction == "sum":
        return grad_output
    return grad_output[..., None] if grad_output.ndim else grad_output


class SoftmaxCrossEntropy(Function):
    """d/dz CE(softmax(z), y) = (softmax(z) - y) * g, divided by N for the mean; never builds the Jacobian.

    `target` holds int labels (N,) or probabilities (N, K) whose rows sum to 1 (validated by
    `functional.softmax_cross_entropy`); d/dy = -log_softmax(z) * g for soft targets.
    """

    @staticmethod
    def forward(ctx, logits, target):
        log_probs = log_softmax(logits, axis=1)
        rows = np.arange(logits.shape[0])
        if target.ndim == 1:
            losses = -log_probs[rows, target]
        else:
            losses = -(target * log_probs).sum(axis=1)
        ctx.save_for_backward(logits, target, log_probs)
        return _reduce(losses, ctx.reduction)

    @staticmethod
    def backward(ctx, grad_output):
        logits, target, log_probs = ctx.saved_tensors
        if log_probs is None:  # create_graph: the log-probabilities again, from the logits as a Tensor in the graph
            log_probs = log_softmax(logits, axis=1)
        scale = _scale_for_reduction(grad_output, ctx.reduction, logits.shape[0])
        if target.ndim == 1:  # labels as one-hot rows (bool)
            target = target[:, None] == np.arange(logits.shape[1])
        grad_target = -log_probs * scale if ctx.needs_input_grad[1] else None
        return (exp(log_probs) - target) * scale, grad_target


class BinaryCrossEntropyWithLogits(Function):
    """d/dz BCE(σ(z), y) = (σ(z) - y) * g, divided by N for the mean; d/dy = -z * g"""

    @staticmethod
    def forward(ctx, z, y):
        losses = np.maximum(z, 0) - broadcasting("binary_cross_entropy_with_logits", np.multiply, z, y)
        losses += np.log1p(np.exp(-np.abs(z)))
        ctx.save_for_backward(z, y)
        return _reduce(losses, ctx.reduction)

    @staticmethod
    def backward(ctx, grad_output):
        z, y = ctx.saved_tensors
        scale = grad_output / z.size if ctx.reduction == "mean" else grad_output
        grad_z = unbroadcast((sigmoid(z) - y) * scale, z.shape)
        grad_y = unbroadcast(-z * scale, y.shape) if ctx.needs_input_grad[1] else None
        return grad_z, grad_y
