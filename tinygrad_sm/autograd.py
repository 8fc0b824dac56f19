"""Gradients of gradients. `grad` differentiates outputs with respect to any tensors without touching `.grad`;
with `create_graph=True` the gradients it returns carry the graph of the backward pass and can be differentiated
again. `jacobian`, `hessian`, `vjp`, `jvp` and `hvp` are torch.autograd.functional's, built on it."""

import numpy as np

from tinygrad_sm import ops
from tinygrad_sm.tensor import Tensor, backward_steps, seed_gradient


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Σₖ grad_outputsₖ · d(outputsₖ)/d(input) for each input, as a tuple of Tensors (None for an input the
    outputs do not depend on, if `allow_unused`). A non-scalar output needs its grad_output (of its shape).
    `retain_graph` defaults to `create_graph`."""
    outputs, inputs = _tensor_list(outputs, "outputs"), _tensor_list(inputs, "inputs")
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(grad_outputs)} grad_outputs for {len(outputs)} outputs; expected one each")
    for index, (output, grad_output) in enumerate(zip(outputs, grad_outputs)):
        _check_output(output, grad_output, index)
    for index, x in enumerate(inputs):
        if not x.requires_grad:
            raise RuntimeError(f"grad: input {index} (shape {x.shape}) does not require a gradient; expected "
                               f"a tensor with requires_grad=True or one made from such tensors")
    seeds = [seed_gradient(output, g, create_graph) for output, g in zip(outputs, grad_outputs)]
    captured = dict.fromkeys(id(x) for x in inputs)
    for _ in backward_steps(outputs, seeds, create_graph if retain_graph is None else retain_graph, captured):
        pass
    results = []
    for index, x in enumerate(inputs):
        gradient = captured[id(x)]
        if gradient is None and not allow_unused:
            raise RuntimeError(f"grad: input {index} (shape {x.shape}) was not used to compute the outputs; "
                               f"pass allow_unused=True to get None for it")
        if gradient is not None and not isinstance(gradient, Tensor):
            gradient = Tensor(gradient.copy())
        results.append(gradient)
    return tuple(results)


def jacobian(fn, inputs, create_graph=False):
    """d fn(inputs) / d inputs: of shape S + T for an output of shape S and an input of shape T (a tuple of them
    for a tuple of inputs). One backward per output element."""
    xs, is_tuple = _leaves(inputs, create_graph)
    output = _output_of(fn, xs, "jacobian")
    rows = _jacobian_rows(output, xs, create_graph)
    return rows if is_tuple else rows[0]


def hessian(fn, inputs):
    """d² fn(inputs) / d inputs² of a scalar fn: of shape T + T for an input of shape T (H[i][j] for a tuple)."""
    xs, is_tuple = _leaves(inputs)
    output = _scalar_output_of(fn, xs, "hessian")
    gradients = grad(output, xs, create_graph=True, allow_unused=True)
    rows = tuple(_jacobian_rows(_or_zeros(g, x), xs, False) for g, x in zip(gradients, xs))
    return rows if is_tuple else rows[0][0]


def vjp(fn, inputs, v=None):
    """(fn(inputs), vᵀ J): v of the output's shape (may be omitted for a one-element output)."""
    xs, is_tuple = _leaves(inputs)
    output = _output_of(fn, xs, "vjp")
    if v is None and output.size != 1:
        raise ValueError(f"vjp: v is needed for an output of shape {output.shape}; expected v of that shape")
    v = np.ones(output.shape, output.dtype) if v is None else _vector(v, output, "vjp: v")
    products = gradients_or_zeros(output, xs, v, create_graph=False)
    return output.detach(), products if is_tuple else products[0]


def jvp(fn, inputs, v):
    """(fn(inputs), J v): v of the inputs' shapes. Two backward passes: u ↦ Jᵀu, then its derivative along v."""
    xs, is_tuple = _leaves(inputs)
    vs = _vectors(v, xs, is_tuple, "jvp")
    output = _output_of(fn, xs, "jvp")
    u = Tensor(np.zeros(output.shape, output.dtype), requires_grad=True)
    transposed = gradients_or_zeros(output, xs, u, create_graph=True)
    used = [(g, w) for g, w in zip(transposed, vs) if g.requires_grad]
    if not used:
        return output.detach(), Tensor(np.zeros(output.shape, output.dtype))
    (product,) = grad([g for g, _ in used], [u], [w for _, w in used], allow_unused=True)
    return output.detach(), _or_zeros(product, output)


def hvp(fn, inputs, v):
    """(fn(inputs), H v) of a scalar fn: the derivative of ⟨∇fn, v⟩, never the whole Hessian."""
    xs, is_tuple = _leaves(inputs)
    vs = _vectors(v, xs, is_tuple, "hvp")
    output = _scalar_output_of(fn, xs, "hvp")
    gradients = grad(output, xs, create_graph=True, allow_unused=True)
    pairs = [(g, w) for g, w in zip(gradients, vs) if g is not None and g.requires_grad]
    if not pairs:
        products = tuple(Tensor(np.zeros(x.shape, x.dtype)) for x in xs)
    else:  # the gradients' backward from v: Σ vᵀ d∇fn/dx
        graded, directions = zip(*pairs)
        products = tuple(_or_zeros(p, x) for p, x in zip(grad(graded, xs, directions, allow_unused=True), xs))
    return output.detach(), products if is_tuple else products[0]


def _tensor_list(values, what):
    values = [values] if isinstance(values, Tensor) else list(values) if isinstance(values, (tuple, list)) else None
    if not values or not all(isinstance(v, Tensor) for v in values):
        raise TypeError(f"grad: {what} must be a Tensor or a non-empty sequence of Tensors")
    return values


def _check_output(output, grad_output, index):
    if not output.requires_grad:
        raise RuntimeError(f"grad: output {index} does not require a gradient (no input of it requires one)")
    if grad_output is None and output.size != 1:
        raise RuntimeError(f"grad: output {index} has shape {output.shape}; a non-scalar output needs "
                           f"grad_outputs of that shape")
    if grad_output is not None and np.shape(getattr(grad_output, "data", grad_output)) != output.shape:
        raise ValueError(f"grad: grad_outputs[{index}] has shape {np.shape(getattr(grad_output, 'data', grad_output))}"
                         f" but output {index} has shape {output.shape}")


def _leaves(inputs, create_graph=False):
    """Fresh leaves that require a gradient, of the inputs' values (a Tensor, or a tuple of them), and whether
    the inputs were a tuple. With `create_graph` an input that requires a gradient stays connected (through a
    reshape to its own shape) so that the result can be differentiated with respect to it."""
    is_tuple = isinstance(inputs, (tuple, list))
    tensors = tuple(inputs) if is_tuple else (inputs,)
    for index, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise TypeError(f"inputs must be a Tensor or a tuple of Tensors, got {type(x).__name__} at {index}")
        if x.dtype.kind != "f":
            raise TypeError(f"input {index} has dtype {x.dtype}; differentiating needs floating-point inputs")
    leaves = (x.reshape(x.shape) if create_graph and x.requires_grad else Tensor(x.data.view(), requires_grad=True)
              for x in tensors)
    return tuple(leaves), is_tuple


def _output_of(fn, xs, name):
    output = fn(*xs)
    if not isinstance(output, Tensor):
        raise TypeError(f"{name}: fn must return a Tensor, got {type(output).__name__}")
    return output


def _scalar_output_of(fn, xs, name):
    output = _output_of(fn, xs, name)
    if output.size != 1:
        raise ValueError(f"{name}: fn must return a scalar (one element), got shape {output.shape}")
    return output


def _vector(value, like, what):
    array = np.asarray(value.data if isinstance(value, Tensor) else value, dtype=like.dtype)
    if array.shape != like.shape:
        raise ValueError(f"{what} has shape {array.shape}; expected {like.shape}")
    return array


def _vectors(v, xs, is_tuple, name):
    vs = tuple(v) if is_tuple and isinstance(v, (tuple, list)) else (v,)
    if len(vs) != len(xs):
        raise ValueError(f"{name}: v needs one vector per input ({len(xs)}), got {len(vs)}")
    return tuple(_vector(w, x, f"{name}: v[{i}]" if is_tuple else f"{name}: v") for i, (w, x) in enumerate(zip(vs, xs)))


def _or_zeros(gradient, like):
    return gradient if gradient is not None else Tensor(np.zeros(like.shape, like.dtype))


def gradients_or_zeros(output, xs, grad_output, create_graph):
    """The gradients of `output` seeded with `grad_output`, zeros for the inputs it does not depend on (the graph
    retained)."""
    if not output.requires_grad:
        return tuple(Tensor(np.zeros(x.shape, x.dtype)) for x in xs)
    gradients = grad(output, xs, grad_output, retain_graph=True, create_graph=create_graph, allow_unused=True)
    return tuple(_or_zeros(g, x) for g, x in zip(gradients, xs))


def _jacobian_rows(output, xs, create_graph):
    """For each input, d output / d input of shape output.shape + input.shape: one backward per output element."""
    rows = []
    for k in range(output.size):
        seed = np.zeros(output.size, output.dtype)
        seed[k] = 1
        rows.append(gradients_or_zeros(output, xs, seed.reshape(output.shape), create_graph))
    jacobians = []
    for i, x in enumerate(xs):
        column = [row[i] for row in rows]
        if create_graph:
            jacobians.append(ops.Stack.apply(*column).reshape(output.shape + x.shape))
        else:
            jacobians.append(Tensor(np.stack([g.data for g in column]).reshape(output.shape + x.shape)))
    return tuple(jacobians)
