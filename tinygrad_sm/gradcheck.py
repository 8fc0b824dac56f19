"""Calculus by two independent routes: finite differences of forward, and autograd; the gradient check that
says where a gradient is wrong (`gradcheck`; `gradgradcheck` for second derivatives; `check_nodes` per node,
`check_node` for one)."""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from tinygrad_sm import autograd, ops
from tinygrad_sm.function import Context
from tinygrad_sm.grad_mode import enable_grad, no_grad
from tinygrad_sm.tensor import Tensor, backward_steps, call_backward, seed_gradient
from tinygrad_sm.walk import backward_order, topo_order


def _float64_copy(x):
    """A C-contiguous float64 copy, so that `reshape(-1)` is a view and perturbing it perturbs the copy."""
    return np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64, order="C")


def _check_step(caller, eps, atol=0.0, rtol=0.0):
    """ValueError unless eps is finite and > 0 and the tolerances finite and >= 0."""
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"{caller}: eps must be > 0 (the finite-difference step), got {eps!r}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{caller}: {name} must be >= 0 and finite, got {value!r}")


def _each_element(evaluate, array, eps, elements=None):
    """evaluate() at x ± eps e_j for each element j of `array` (all, or those listed), perturbing `array` in place
    and restoring it: two (output size, number of elements) float64 arrays. `array` must be C-contiguous; each
    value is copied before the next perturbation, as it may be a view of `array` (f(x) = x)."""
    flat = array.reshape(-1)
    elements = range(flat.size) if elements is None else elements
    plus = minus = None
    for column, j in enumerate(elements):
        original = flat[j]
        flat[j] = original + eps
        up = np.array(evaluate(), dtype=np.float64).reshape(-1)
        flat[j] = original - eps
        down = np.array(evaluate(), dtype=np.float64).reshape(-1)
        flat[j] = original
        if plus is None:
            plus, minus = np.empty((up.size, len(elements))), np.empty((up.size, len(elements)))
        plus[:, column], minus[:, column] = up, down
    if plus is None:
        plus = minus = np.empty((np.size(evaluate()), 0))
    return plus, minus


def _along(evaluate, array, direction, eps):
    """evaluate() at x ± eps v with `array` (x) moved in place along `direction` (v), then restored: two
    (output size, 1) arrays."""
    original, step = array.copy(), eps * direction
    np.add(original, step, out=array)
    plus = np.array(evaluate(), dtype=np.float64).reshape(-1, 1)
    np.subtract(original, step, out=array)
    minus = np.array(evaluate(), dtype=np.float64).reshape(-1, 1)
    array[...] = original
    return plus, minus


def _backward_rows(output, leaves, upstreams=None):
    """One (rows, leaf size) matrix per leaf: row k = d(g_k · output)/d leaf by one backward of g_k with the graph
    retained; `upstreams` None means g_k = e_k for every output element, i.e. the Jacobian.

    Every other tensor of the graph (a weight `fn` captured, a model's parameters) keeps the `.grad` it had.
    """
    count = output.size if upstreams is None else len(upstreams)
    if not output.requires_grad:
        return [np.zeros((count, leaf.size)) for leaf in leaves]
    matrices = [np.empty((count, leaf.size)) for leaf in leaves]
    checked = {id(leaf) for leaf in leaves}
    others = [t for t in topo_order(output) if id(t) not in checked]
    kept = [t.grad for t in others]
    try:
        for k in range(count):
            if upstreams is None:
                upstream = np.zeros(output.shape)
                upstream.flat[k] = 1.0
            else:
                upstream = upstreams[k]
            for leaf in leaves:
                leaf.grad = None
            for _ in backward_steps([output], [seed_gradient(output, upstream)], retain_graph=True):
                pass
            for leaf, matrix in zip(leaves, matrices):
                matrix[k] = 0.0 if leaf.grad is None else leaf.grad.data.reshape(-1)
    finally:
        for tensor, grad in zip(others, kept):
            tensor.grad = grad
    return matrices


def numerical_jacobian(fn, x, eps=1e-6):
    """J[i, j] ≈ (f(x + eps e_j) - f(x - eps e_j))_i / 2 eps, in float64; shape (output size, input size)."""
    _check_step("numerical_jacobian", eps)
    point = _float64_copy(x)
    with no_grad():
        plus, minus = _each_element(lambda: fn(Tensor(point)).data, point, eps)
    return (plus - minus) / (2 * eps)


def jacobian(fn, x):
    """J[i, :] = d f_i / dx by autograd: one vector-Jacobian product (a backward with e_i) per output element.

    Other leaves `fn` reaches (a model's parameters, say) keep the `.grad` they had before the call.
    """
    point = Tensor(_float64_copy(x), requires_grad=True)
    return _backward_rows(fn(point), [point])[0]


def hessian(fn, x, eps=1e-5):
    """H[:, j] ≈ (∇f(x + eps e_j) - ∇f(x - eps e_j)) / 2 eps from autograd gradients of a scalar f, symmetrised.

    The finite-difference reference; `tinygrad_sm.autograd.hessian` is the exact one (autograd twice).
    """
    _check_step("hessian", eps)
    point = _float64_copy(x)
    with no_grad():
        size = fn(Tensor(point)).size
    if size != 1:
        raise ValueError(f"hessian: fn must return a scalar (one element), got {size} elements")
    plus, minus = _each_element(lambda: jacobian(fn, point)[0], point, eps)
    matrix = (plus - minus) / (2 * eps)
    return (matrix + matrix.T) / 2


# ---- gradcheck: the whole gradient of fn against finite differences, and where it is wrong ----


@dataclass
class InputCheck:
    """One input's autograd gradient against finite differences.

    Relative error is |analytical - numerical| / max(|numerical|, atol), so entries near zero do not blow
    it up; an entry mismatches when |analytical - numerical| > atol + rtol |numerical| (PyTorch's rule).
    In fast mode the compared values are the projections uᵀJv, one per input, and `worst_index` is None.
    """

    index: int
    shape: tuple
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple | None
    worst_output_index: tuple | None
    analytical: float
    numerical: float
    mismatches: int
    compared: int
    nondifferentiable: int
    nondifferentiable_at: list = field(default_factory=list)

    @property
    def ok(self):
        return self.mismatches == 0

    def to_dict(self):
        return {
            "index": self.index,
            "shape": list(self.shape),
            "ok": self.ok,
            "max_abs_error": _finite_or_none(self.max_abs_error),
            "max_rel_error": _finite_or_none(self.max_rel_error),
            "worst_index": None if self.worst_index is None else list(self.worst_index),
            "worst_output_index": None if self.worst_output_index is None else list(self.worst_output_index),
            "analytical": _finite_or_none(self.analytical),
            "numerical": _finite_or_none(self.numerical),
            "mismatches": self.mismatches,
            "compared": self.compared,
            "nondifferentiable": self.nondifferentiable,
            "nondifferentiable_at": [list(index) for index in self.nondifferentiable_at],
        }


class _LargestErrors:
    """max_abs_error and max_rel_error: the largest over `self.inputs` (NaN counts as the largest)."""

    @property
    def max_abs_error(self):
        return max((check.max_abs_error for check in self.inputs), default=0.0, key=_nan_first)

    @property
    def max_rel_error(self):
        return max((check.max_rel_error for check in self.inputs), default=0.0, key=_nan_first)


@dataclass
class GradcheckReport(_LargestErrors):
    """What `gradcheck` found: `ok`, and one `InputCheck` per input that requires a gradient. `second_order`:
    made by `gradgradcheck` (the checked function is the gradient, its inputs fn's and the grad_outputs)."""

    inputs: list
    output_shape: tuple
    fast: bool
    eps: float
    atol: float
    rtol: float
    upcast: list
    second_order: bool = False

    @property
    def ok(self):
        return all(check.ok for check in self.inputs)

    def worst(self):
        """The failing InputCheck with the largest absolute error (or None when all pass)."""
        failing = [check for check in self.inputs if not check.ok]
        return max(failing, key=lambda check: _nan_first(check.max_abs_error)) if failing else None

    def to_dict(self):
        return {
            "ok": self.ok,
            "mode": "fast" if self.fast else "full",
            "order": 2 if self.second_order else 1,
            "eps": self.eps,
            "atol": self.atol,
            "rtol": self.rtol,
            "output_shape": list(self.output_shape),
            "upcast_to_float64": self.upcast,
            "max_abs_error": _finite_or_none(self.max_abs_error),
            "max_rel_error": _finite_or_none(self.max_rel_error),
            "inputs": [check.to_dict() for check in self.inputs],
        }

    def __str__(self):
        mode = "fast (random projections uᵀJv)" if self.fast else "full Jacobian"
        lines = [
            f"{'gradgradcheck' if self.second_order else 'gradcheck'} {'passed' if self.ok else 'FAILED'}: {mode}, "
            f"output shape {self.output_shape}, "
            f"eps={self.eps:g} atol={self.atol:g} rtol={self.rtol:g}"
        ]
        if self.upcast:
            listed = ", ".join(str(index) for index in self.upcast)
            lines.append(f"input(s) {listed} not float64: checked in float64 copies")
        header = (
            f"{'input':<6}{'shape':<14}{'max abs err':>13}{'max rel err':>13}{'mismatches':>12}  "
            f"{'worst element':<22}{'analytical':>16}{'numerical':>16}  result"
        )
        lines.append(header)
        for check in self.inputs:
            lines.append(
                f"{check.index:<6}{str(check.shape):<14}{check.max_abs_error:>13.2e}{check.max_rel_error:>13.2e}"
                f"{f'{check.mismatches}/{check.compared}':>12}  {_describe_worst(check):<22}"
                f"{check.analytical:>+16.8g}{check.numerical:>+16.8g}  {'pass' if check.ok else 'FAIL'}"
            )
        for check in self.inputs:
            if check.nondifferentiable:
                where = ", ".join(str(index) for index in check.nondifferentiable_at)
                lines.append(
                    f"input {check.index}: {check.nondifferentiable} non-differentiable point(s) where the one-sided "
                    f"differences disagree{' at ' + where if where else ''} (not counted as failures)"
                )
        worst = self.worst()
        if worst is not None:
            lines.append(
                f"worst mismatch: input {worst.index}, element {_describe_worst(worst)}: "
                f"analytical {worst.analytical:+.8g}, numerical {worst.numerical:+.8g}"
            )
        return "\n".join(lines)


def _nan_first(value):
    return np.inf if np.isnan(value) else value


def _finite_or_none(value):
    return float(value) if np.isfinite(value) else None


def _describe_worst(check):
    if check.worst_index is None:
        return "uᵀJv"
    if check.worst_output_index is None or check.worst_output_index == ():
        return str(check.worst_index)
    return f"out {check.worst_output_index} in {check.worst_index}"


def _describe_input(check):
    text = f"input {check.index}: max abs err {check.max_abs_error:.2e}, {check.mismatches}/{check.compared} mismatches"
    if check.nondifferentiable:
        text += f", {check.nondifferentiable} non-differentiable"
    if not check.ok:
        text += (f", worst {_describe_worst(check)}: analytical {check.analytical:+.8g}, "
                 f"numerical {check.numerical:+.8g}")
    return text


def _compare(index, shape, output_shape, analytical, numerical, kink, atol, rtol, fast=False):
    """Compare (outputs x inputs) arrays: analytical vs central differences, the `kink` entries left out."""
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error = np.abs(analytical - numerical)
        mismatch = ~(abs_error <= atol + rtol * np.abs(numerical)) & ~kink
        rel_error = abs_error / np.maximum(np.abs(numerical), max(atol, np.finfo(np.float64).tiny))
        score = np.where(np.isnan(abs_error), np.inf, abs_error)
    score[kink] = -1.0
    kink_inputs = [] if fast else sorted({int(i) for i in np.nonzero(kink)[1]})[:10]
    if abs_error.size == 0:
        return InputCheck(index, shape, 0.0, 0.0, None, None, 0.0, 0.0, 0, 0, 0)
    worst = int(np.argmax(score))
    row, column = divmod(worst, abs_error.shape[1])
    return InputCheck(
        index=index,
        shape=tuple(shape),
        max_abs_error=float(np.max(abs_error[~kink], initial=0.0)),
        max_rel_error=float(np.max(rel_error[~kink], initial=0.0)),
        worst_index=None if fast else tuple(int(i) for i in np.unravel_index(column, shape)),
        worst_output_index=None if fast else tuple(int(i) for i in np.unravel_index(row, output_shape)),
        analytical=float(analytical.flat[worst]),
        numerical=float(numerical.flat[worst]),
        mismatches=int(mismatch.sum()),
        compared=int(abs_error.size),
        nondifferentiable=int(kink.sum()),
        nondifferentiable_at=[tuple(int(i) for i in np.unravel_index(j, shape)) for j in kink_inputs],
    )


def _differences(plus, minus, base, eps, analytical, atol, rtol):
    """The central difference (f+ - f-) / 2eps; the gap between the one-sided ones, (f0 - f-) / eps and
    (f+ - f0) / eps; and where they disagree with `analytical` between them (a suspected kink)."""
    with np.errstate(invalid="ignore", over="ignore"):
        central, left, right = (plus - minus) / (2 * eps), (base - minus) / eps, (plus - base) / eps
        low, high = np.minimum(left, right), np.maximum(left, right)
        tolerance = atol + rtol * np.abs(central)
        kink = (
            (high - low > atol + rtol * np.maximum(np.abs(low), np.abs(high)))
            & (analytical >= low - tolerance)
            & (analytical <= high + tolerance)
        )
        return central, high - low, kink


def _check_input(index, output_shape, analytical, evaluate, array, direction, base, eps, atol, rtol):
    """An InputCheck of `analytical` (outputs x columns) against central differences of evaluate() (f(x) = `base`),
    with `array` moved along each of its elements (a column each), or along `direction` (fast mode: one column).

    A suspected kink, where the one-sided differences disagree and `analytical` lies between them, is redone at
    step eps/10: at a real kink (relu at 0, tied maxima) the gap between them stays, and the entry is reported as
    non-differentiable; on a smooth function it shrinks with the step, and the entry is compared like any other,
    with whichever central difference (step eps or eps/10) is closer, since a kink just inside ±eps biases the first.
    """

    def perturbed(step, columns=None):
        if direction is None:
            return _each_element(evaluate, array, step, columns)
        return _along(evaluate, array, direction, step)

    numerical, gap, kink = _differences(*perturbed(eps), base, eps, analytical, atol, rtol)
    if kink.any():
        columns = np.flatnonzero(kink.any(axis=0))
        wanted, compared = analytical[:, columns], numerical[:, columns]
        finer, finer_gap, _ = _differences(*perturbed(eps / 10, columns), base, eps / 10, wanted, atol, rtol)
        stays = finer_gap > gap[:, columns] / 2
        with np.errstate(invalid="ignore", over="ignore"):
            closer = np.abs(wanted - finer) < np.abs(wanted - compared)
        numerical[:, columns] = np.where(kink[:, columns] & ~stays & closer, finer, compared)
        kink[:, columns] &= stays
    return _compare(index, array.shape, output_shape, analytical, numerical, kink, atol, rtol, direction is not None)


def _is_checked(value):
    if isinstance(value, Tensor):
        return value.requires_grad
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _prepare(inputs):
    """float64 leaf copies of the inputs to check (Tensors requiring grad, float arrays); float constants upcast."""
    if isinstance(inputs, (Tensor, np.ndarray)):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"gradcheck: inputs must be a list or tuple of Tensors or arrays, got {type(inputs).__name__}")
    args, checked, upcast = [], [], []
    for index, value in enumerate(inputs):
        if _is_checked(value):
            data = value.data if isinstance(value, Tensor) else value
            if data.dtype != np.float64:
                upcast.append(index)
            args.append(Tensor(_float64_copy(data), requires_grad=True))
            checked.append(index)
        elif isinstance(value, Tensor) and value.dtype.kind == "f":
            args.append(Tensor(_float64_copy(value)))
        else:
            args.append(value)
    if not checked:
        raise ValueError(
            "gradcheck: no input requires a gradient; pass Tensors with requires_grad=True or float numpy arrays"
        )
    return args, checked, upcast


def _run(fn, args):
    output = fn(*args)
    if not isinstance(output, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(output).__name__}")
    if output.dtype.kind != "f":
        raise TypeError(f"gradcheck: fn must return a floating-point Tensor, got dtype {output.dtype}")
    return output


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast=False, seed=0):
    """Check fn's autograd gradients against central differences in float64; returns a GradcheckReport.

    Inputs checked: Tensors with requires_grad=True and float numpy arrays; others are constants.
    Full mode compares the whole Jacobian (two forward passes per input element, one backward per output
    element); `fast=True` compares one random projection uᵀJv per input (two forward passes per input).
    Where the one-sided differences disagree, the analytical value lies between them, and the gap stays at a
    ten times smaller step (relu at 0, tied maxima), the element is reported as non-differentiable, not as a
    failure. Tensors `fn` captures keep their `.grad`.
    """
    _check_step("gradcheck", eps, atol, rtol)
    args, checked, upcast = _prepare(inputs)
    leaves = [args[index] for index in checked]
    output = _run(fn, args)
    base = np.array(output.data, dtype=np.float64).reshape(-1, 1)
    results = []
    if fast:
        rng = np.random.default_rng(seed)
        u = _unit(rng.standard_normal(output.shape))
        project = u.reshape(-1)
        rows = _backward_rows(output, leaves, [u])
        with no_grad():  # the finite differences' forwards record no graph
            for index, leaf, grad in zip(checked, leaves, rows):
                v = _unit(rng.standard_normal(leaf.shape))
                analytical = np.array([[grad.reshape(-1) @ v.reshape(-1)]])
                results.append(_check_input(index, output.shape, analytical,
                                            lambda: project @ fn(*args).data.reshape(-1),
                                            leaf.data, v, project @ base, eps, atol, rtol))
    else:
        rows = _backward_rows(output, leaves)
        with no_grad():
            for index, leaf, analytical in zip(checked, leaves, rows):
                results.append(_check_input(index, output.shape, analytical, lambda: fn(*args).data,
                                            leaf.data, None, base, eps, atol, rtol))
    return GradcheckReport(results, tuple(output.shape), fast, eps, atol, rtol, upcast)


def _unit(vector):
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else np.ones_like(vector)


def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-3, fast=False, seed=0):
    """Check fn's second derivatives: `gradcheck` of g(inputs, v) = vᵀ d fn / d inputs, the gradient by autograd
    with create_graph, against finite differences of that gradient (`gradient_fn`); returns a GradcheckReport.

    As torch.autograd.gradgradcheck: `inputs` are Tensors (those with requires_grad=True differentiated, the
    others constants); `grad_outputs` v, of fn's output shape, defaults to a random Tensor (from `seed`) that is
    checked as one more input, the last.
    """
    _check_step("gradgradcheck", eps, atol, rtol)
    gradient, gradient_inputs = gradient_fn(fn, inputs, grad_outputs, seed)
    report = gradcheck(gradient, gradient_inputs, eps=eps, atol=atol, rtol=rtol, fast=fast, seed=seed)
    return replace(report, second_order=True)


def gradient_fn(fn, inputs, grad_outputs=None, seed=0):
    """(gradient, inputs + [v]) for gradcheck: gradient(*inputs, v) = vᵀ d fn / d inputs by autograd with
    create_graph, the gradient of the one differentiated input, or those of several flattened and concatenated
    in input order. Arguments as `gradgradcheck`'s."""
    tensors = _tensor_inputs(inputs)
    differentiated = [index for index, x in enumerate(tensors) if x.requires_grad]
    if not differentiated:
        raise ValueError("gradgradcheck: no input requires a gradient; pass Tensors with requires_grad=True")
    output = _run(fn, [Tensor(_float64_copy(x), requires_grad=x.requires_grad) for x in tensors])
    if not output.requires_grad:
        raise ValueError("gradgradcheck: fn's output does not depend on any input that requires a gradient")

    def gradient(*values):
        xs, v = values[: len(tensors)], values[len(tensors)]
        with enable_grad():
            grads = autograd.gradients_or_zeros(_run(fn, xs), [xs[i] for i in differentiated], v, create_graph=True)
            return _concatenated(grads)

    return gradient, [*tensors, _grad_output(grad_outputs, output.shape, seed)]


def _tensor_inputs(inputs):
    """The inputs as a list of floating-point Tensors, or a TypeError naming the first that is not one."""
    inputs = [inputs] if isinstance(inputs, Tensor) else inputs
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"gradgradcheck: inputs must be a Tensor or a list or tuple of Tensors, "
                        f"got {type(inputs).__name__}")
    for index, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"gradgradcheck: input {index} is a {type(x).__name__}; expected a Tensor "
                            f"(requires_grad=True to differentiate it, else a constant)")
        if x.dtype.kind != "f":
            raise TypeError(f"gradgradcheck: input {index} has dtype {x.dtype}; expected a floating-point Tensor "
                            f"(capture integer labels in fn instead)")
    return list(inputs)


def _grad_output(grad_outputs, shape, seed):
    """The upstream gradient v of fn's output `shape`: random (checked) when None, else the one given (a Tensor,
    checked when it requires a gradient, or a float array, checked; in a list or tuple of one, as PyTorch's)."""
    if grad_outputs is None:
        return Tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)
    if isinstance(grad_outputs, (list, tuple)):
        if len(grad_outputs) != 1:
            raise ValueError(f"gradgradcheck: fn has one output, so grad_outputs needs one Tensor (of shape "
                             f"{shape}), got {len(grad_outputs)}")
        (grad_outputs,) = grad_outputs
    value = grad_outputs.data if isinstance(grad_outputs, Tensor) else grad_outputs
    if not (isinstance(value, np.ndarray) and value.dtype.kind == "f"):
        raise TypeError(f"gradgradcheck: grad_outputs must be a floating-point Tensor or array of fn's output "
                        f"shape {shape}, got {type(grad_outputs).__name__}")
    if value.shape != shape:
        raise ValueError(f"gradgradcheck: grad_outputs has shape {value.shape}; expected fn's output shape {shape}")
    return grad_outputs


def _concatenated(tensors):
    """One Tensor: the only one as it is, or all flattened and placed one after another (add_at of each)."""
    if len(tensors) == 1:
        return tensors[0]
    total, offset, placed = sum(t.size for t in tensors), 0, []
    for tensor in tensors:
        placed.append(ops.add_at(tensor.reshape(-1), (total,), slice(offset, offset + tensor.size)))
        offset += tensor.size
    return sum(placed[1:], placed[0])


# ---- check_nodes: every node's backward against finite differences of its own forward ----


@dataclass
class NodeCheck(_LargestErrors):
    """One node of the graph (`check_node`): its backward on its recorded inputs against differences of its
    forward; one InputCheck per input that takes a gradient, or the `error` its forward or backward raised."""

    position: int
    op_name: str
    input_shapes: list
    output_shape: tuple
    location: str
    inputs: list
    error: str | None = None

    @property
    def ok(self):
        return self.error is None and all(check.ok for check in self.inputs)

    def to_dict(self):
        return {
            "position": self.position,
            "op": self.op_name,
            "input_shapes": [list(shape) for shape in self.input_shapes],
            "output_shape": list(self.output_shape),
            "location": self.location,
            "ok": self.ok,
            "max_abs_error": _finite_or_none(self.max_abs_error),
            "max_rel_error": _finite_or_none(self.max_rel_error),
            "error": self.error,
            "inputs": [check.to_dict() for check in self.inputs],
        }

    def __str__(self):
        """One line: `#2 Softmax: input 0: max abs err 1.2e-10, 0/12 mismatches  pass`, and the worst element
        of an input that fails."""
        if self.error is not None:
            detail = self.error
        else:
            detail = "; ".join(_describe_input(check) for check in self.inputs) or "no input takes a gradient"
        return f"#{self.position} {self.op_name}: {detail}  {'pass' if self.ok else 'FAIL'}"


@dataclass
class NodesReport:
    """What `check_nodes` found: one NodeCheck per node in backward order, and the first that fails."""

    nodes: list
    fast: bool

    @property
    def ok(self):
        return all(node.ok for node in self.nodes)

    @property
    def first_failure(self):
        return next((node for node in self.nodes if not node.ok), None)

    def to_dict(self):
        first = self.first_failure
        return {
            "ok": self.ok,
            "mode": "fast" if self.fast else "full",
            "first_failure": None if first is None else first.to_dict(),
            "nodes": [node.to_dict() for node in self.nodes],
        }

    def __str__(self):
        lines = [
            f"{'#':<4}{'op':<30}{'inputs':<26}{'output':<12}{'max abs err':>13}{'max rel err':>13}  "
            f"{'result':<7}created at"
        ]
        for node in self.nodes:
            shapes = ", ".join(str(shape) for shape in node.input_shapes)
            lines.append(
                f"{node.position:<4}{node.op_name:<30}{shapes:<26}{str(node.output_shape):<12}"
                f"{node.max_abs_error:>13.2e}{node.max_rel_error:>13.2e}  {'pass' if node.ok else 'FAIL':<7}"
                f"{node.location}"
            )
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self):
        """One line: all nodes pass, or the first failing node in backward order and its worst element."""
        first = self.first_failure
        if first is None:
            return f"every node's backward matches its forward ({len(self.nodes)} nodes)"
        line = f"first failing node in backward order: #{first.position} {first.op_name}, created at {first.location}"
        if first.error is not None:
            return f"{line}: {first.error}"
        worst = max(
            (check for check in first.inputs if not check.ok), key=lambda check: _nan_first(check.max_abs_error)
        )
        return (
            f"{line}: input {worst.index}, element {_describe_worst(worst)}: "
            f"analytical {worst.analytical:+.8g}, numerical {worst.numerical:+.8g}"
        )


def rerun_forward(node, arrays):
    """The node's op forward on `arrays` with a fresh Context carrying the node's attrs: (ctx, output); the ctx's
    parents are Tensors of `arrays`, so `call_backward(ctx, g)` checks gradients against them."""
    ctx = Context(node.op, node.attrs)
    ctx.parents = tuple(Tensor(array) for array in arrays)
    ctx.needs_input_grad = node.needs_input_grad
    return ctx, np.asarray(node.op.forward(ctx, *arrays))


def _node_forward(node, arrays):
    with np.errstate(all="ignore"):
        return np.array(rerun_forward(node, arrays)[1], dtype=np.float64)


def check_nodes(output, eps=1e-6, atol=1e-5, rtol=1e-3, fast=False, seed=0):
    """Check every node that made `output` on its own (`check_node`), each fed a random upstream gradient.
    Returns a NodesReport.

    The node's forward is re-run on its parents' data, so this works after `backward()` released the graph.
    """
    _check_step("check_nodes", eps, atol, rtol)
    if not isinstance(output, Tensor):
        raise TypeError(f"check_nodes: output must be a Tensor, got {type(output).__name__}")
    if output.grad_fn is None:
        raise ValueError("check_nodes: output was not made by a recorded op (no input required a gradient)")
    rng = np.random.default_rng(seed)
    checks = [
        check_node(node, None, eps, atol, rtol, fast, rng, position)
        for position, node in enumerate(backward_order(output))
    ]
    return NodesReport(checks, fast)


def check_node(node, upstream, eps=1e-6, atol=1e-5, rtol=1e-3, fast=False, rng=None, position=0):
    """One node alone: its backward of `upstream` g against central differences of g · forward, on float64
    copies of its recorded inputs, for every input that takes a gradient. Returns a NodeCheck.

    `upstream` None draws g from `rng` (standard normal, output's shape); `rng` (default seed 0) also draws
    fast mode's directions. An exception in the node's forward or backward is reported on the NodeCheck.
    """
    _check_step("check_node", eps, atol, rtol)
    rng = np.random.default_rng(0) if rng is None else rng
    arrays = [_float64_copy(p) if p.dtype.kind == "f" else p.data for p in node.parents]
    row = NodeCheck(position, node.op_name, [p.shape for p in node.parents], (), node.where, [])
    try:
        base = _node_forward(node, arrays)
    except Exception as error:  # a broken op is what this check is for: report it on its row
        row.error = f"{type(error).__name__}: {error}"
        return row
    row.output_shape = base.shape
    if upstream is None:
        upstream = rng.standard_normal(base.shape)
    upstream = np.asarray(upstream, dtype=np.float64)
    if upstream.shape != base.shape:
        raise ValueError(
            f"check_node: upstream has shape {upstream.shape}, but #{position} {node.op_name}'s output has shape "
            f"{base.shape}; pass an upstream gradient of the output's shape"
        )
    try:
        grads = _node_backward(node, arrays, upstream)
    except Exception as error:
        row.error = f"{type(error).__name__}: {error}"
        return row
    total = float(np.sum(upstream * base))

    def evaluate():
        return np.sum(upstream * _node_forward(node, arrays))

    for index, grad in enumerate(grads):
        if not node.needs_input_grad[index]:
            continue
        direction = _unit(rng.standard_normal(arrays[index].shape)) if fast else None
        analytical = np.array([[np.sum(grad * direction)]]) if fast else grad.reshape(1, -1)
        row.inputs.append(
            _check_input(index, (), analytical, evaluate, arrays[index], direction, total, eps, atol, rtol)
        )
    return row


def _node_backward(node, arrays, upstream):
    ctx, _ = rerun_forward(node, arrays)
    grads = call_backward(ctx, upstream)
    return [np.zeros(np.shape(array)) if grad is None else grad for array, grad in zip(arrays, grads)]


def model_fn(model, loss_fn):
    """(fn, params) for gradcheck: fn(*params) = loss_fn(model) with model's parameters replaced by its arguments.

    The model gets its own parameters back when fn returns or raises.
    """
    named = list(model.named_parameters())
    params = [param for _, param in named]
    places = [_place(model, name) for name, _ in named]

    def fn(*values):
        undo = []
        try:
            for place, value in zip(places, values):
                undo.append(_swap(place, value))
            return loss_fn(model)
        finally:
            for owner, key, previous in reversed(undo):
                _put(owner, key, previous)

    return fn, params


def _place(model, dotted_name):
    """Where the parameter `dotted_name` ("layers.0.weight", "scales.1") is: (owner, key, None), or for an item of
    a tuple, which cannot be assigned to, (the tuple's owner, its key, the item's index)."""
    *path, key = dotted_name.split(".")
    parent, owner = None, model
    for part in path:
        parent, owner = owner, _get(owner, part)
    if isinstance(owner, tuple):
        return parent, path[-1], int(key)
    return owner, key, None


def _swap(place, value):
    """Put `value` at `place` (see `_place`); returns (owner, key, previous): putting `previous` back undoes it."""
    owner, key, index = place
    previous = _get(owner, key)
    if index is not None:
        items = list(previous)
        items[index] = value
        value = tuple(items)
    _put(owner, key, value)
    return owner, key, previous


def _get(owner, key):
    return owner[int(key)] if isinstance(owner, (list, tuple)) else getattr(owner, key)


def _put(owner, key, value):
    if isinstance(owner, list):
        owner[int(key)] = value
    else:
        setattr(owner, key, value)


def localize(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast=False, seed=0):
    """`check_nodes` on the graph fn builds from float64 copies of the inputs gradcheck would check."""
    _check_step("localize", eps, atol, rtol)
    args, _, _ = _prepare(inputs)
    return check_nodes(_run(fn, args), eps=eps, atol=atol, rtol=rtol, fast=fast, seed=seed)
