"""Tensor: a numpy array, its gradient, and the node that made it; the engine that runs ops and backward."""

import os
import sys
import time
import weakref

import numpy as np

from tinygrad_sm import ops
from tinygrad_sm.function import Context, Function

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class _Settings:
    """Engine-wide switches: grad mode (`no_grad`), anomaly detection (`debug.detect_anomaly`), and
    `TINYGRAD_SM_DEBUG=1`, which prints one line per op as it runs, forward and backward."""

    grad_enabled = True
    detect_anomaly = False
    debug = os.environ.get("TINYGRAD_SM_DEBUG", "0") not in ("", "0")
    module_stack = []  # the nn.Modules whose forward is running, outermost first


settings = _Settings()


class no_grad:
    """`with no_grad():` runs ops without recording nodes (inference, optimiser updates)."""

    def __init__(self):
        self.previous = []

    def __enter__(self):
        self.previous.append(settings.grad_enabled)
        settings.grad_enabled = False

    def __exit__(self, *exc_info):
        settings.grad_enabled = self.previous.pop()


class AnomalyError(FloatingPointError):
    """A NaN or Inf first appeared at a node (raised under `debug.detect_anomaly()`)."""


def user_location():
    """(file, line) of the innermost frame outside this package: where user code made the node."""
    frame = sys._getframe(3)  # skips this function, apply_op and Function.apply
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE_DIR):
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None


def _is_float(array):
    return array.dtype.kind == "f"


def _describe(arrays):
    return ", ".join(f"{a.shape} {a.dtype}" for a in arrays)


class Tensor:
    """An n-dimensional array that remembers how it was made, so `backward()` can find its gradients.

    A Tensor made from a Python list or number is float32; from a numpy array it keeps the dtype.
    Only floating-point tensors can require a gradient.
    """

    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "name", "_hooks", "__weakref__")
    __array_priority__ = 1000  # numpy array (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        elif isinstance(data, np.generic):
            data = np.asarray(data)
        elif not isinstance(data, np.ndarray):
            data = np.asarray(data, dtype=dtype or np.float32)
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        if requires_grad and not _is_float(data):
            raise TypeError(
                f"requires_grad=True needs a floating-point tensor, got dtype {data.dtype}; "
                f"integer labels, masks and indices never require gradients"
            )
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad
        self.grad_fn = None
        self.name = name
        self._hooks = None

    # ---- what it holds ----
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    is_leaf = property(lambda self: self.grad_fn is None, doc="True for a tensor no recorded op made.")

    def numpy(self):
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def detach(self):
        """The same data, cut from the graph: no node, no gradient."""
        return Tensor(self.data)

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        return bool(self.data)

    def __repr__(self):
        grad = f", grad_fn={self.grad_fn.op_name}" if self.grad_fn else ""
        flag = ", requires_grad=True" if self.requires_grad and not self.grad_fn else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{flag}{grad})"

    # ---- operators (numpy broadcasting) ----
    def __add__(self, other): return ops.Add.apply(self, other)
    def __radd__(self, other): return ops.Add.apply(other, self)
    def __sub__(self, other): return ops.Sub.apply(self, other)
    def __rsub__(self, other): return ops.Sub.apply(other, self)
    def __mul__(self, other): return ops.Mul.apply(self, other)
    def __rmul__(self, other): return ops.Mul.apply(other, self)
    def __truediv__(self, other): return ops.Div.apply(self, other)
    def __rtruediv__(self, other): return ops.Div.apply(other, self)
    def __pow__(self, other): return ops.Pow.apply(self, other)
    def __rpow__(self, other): return ops.Pow.apply(other, self)
    def __matmul__(self, other): return ops.MatMul.apply(self, other)
    def __rmatmul__(self, other): return ops.MatMul.apply(other, self)
    def __neg__(self): return ops.Neg.apply(self)

    # comparisons give boolean tensors that never require gradients
    def __lt__(self, other): return Tensor(self.data < _array_of(other, self))
    def __le__(self, other): return Tensor(self.data <= _array_of(other, self))
    def __gt__(self, other): return Tensor(self.data > _array_of(other, self))
    def __ge__(self, other): return Tensor(self.data >= _array_of(other, self))
    def __eq__(self, other): return Tensor(self.data == _array_of(other, self))
    def __ne__(self, other): return Tensor(self.data != _array_of(other, self))
    __hash__ = object.__hash__

    def __getitem__(self, index):
        return ops.GetItem.apply(self, index=_numpy_index(index))

    # ---- elementwise functions ----
    def exp(self): return ops.Exp.apply(self)
    def log(self): return ops.Log.apply(self)
    def tanh(self): return ops.Tanh.apply(self)
    def sigmoid(self): return ops.Sigmoid.apply(self)
    def relu(self): return ops.Relu.apply(self)

    # ---- reductions ----
    def sum(self, axis=None, keepdims=False):
        return ops.Sum.apply(self, axis=_axis_arg(axis), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return ops.Mean.apply(self, axis=_axis_arg(axis), keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return ops.Max.apply(self, axis=_axis_arg(axis), keepdims=keepdims)

    def softmax(self, axis=-1):
        return ops.Softmax.apply(self, axis=_axis_arg(axis))

    def log_softmax(self, axis=-1):
        return ops.LogSoftmax.apply(self, axis=_axis_arg(axis))

    def logsumexp(self, axis=-1, keepdims=False):
        return ops.LogSumExp.apply(self, axis=_axis_arg(axis), keepdims=keepdims)

    # ---- shape ----
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return ops.Reshape.apply(self, shape=shape)

    def transpose(self, *axes):
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return ops.Transpose.apply(self, axes=axes or None)

    @property
    def T(self):
        return ops.Transpose.apply(self, axes=None)

    # ---- gradients ----
    def backward(self, grad=None, retain_graph=False):
        """Fill `.grad` of every leaf that requires it with d(self)/d(leaf), accumulating like PyTorch."""
        for _ in backward_steps(self, grad, retain_graph):
            pass

    def graph(self, **options):
        """This tensor's graph as a graphviz.Digraph (options as `viz.draw_graph`); shows inline in Jupyter."""
        from tinygrad_sm.viz import draw_graph  # rendering sits above the engine: imported only when asked

        return draw_graph(self, **options)

    def register_hook(self, hook):
        """`hook(grad)` runs when this tensor's gradient is complete; a returned Tensor replaces it."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require a gradient, so no hook would run")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return RemovableHandle(self._hooks, hook)


class RemovableHandle:
    """What `register_hook` returns: `.remove()` takes the hook away again."""

    def __init__(self, hooks, hook):
        self.hooks = hooks
        self.hook = hook

    def remove(self):
        if self.hook in self.hooks:
            self.hooks.remove(self.hook)


def _axis_arg(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _numpy_index(index):
    """Tensors and lists inside an index become numpy arrays (integer or boolean)."""
    parts = index if isinstance(index, tuple) else (index,)
    converted = tuple(
        p.data if isinstance(p, Tensor) else np.asarray(p) if isinstance(p, list) else p for p in parts
    )
    return converted if isinstance(index, tuple) else converted[0]


def _array_of(value, like):
    """A Tensor's array; a number takes `like`'s floating dtype (numpy 2's rule), an array stays itself."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (bool, int, float)) and _is_float(like.data):
        return np.asarray(value, dtype=like.data.dtype)
    return np.asarray(value)


def _constant(op, value, inputs):
    """A number or array among an op's inputs, as a Tensor that takes the first Tensor input's dtype rule."""
    like = next((x for x in inputs if isinstance(x, Tensor)), None)
    if like is None:
        raise TypeError(f"{op.__name__}.apply needs at least one Tensor among its inputs")
    return Tensor(_array_of(value, like))


def apply_op(op, inputs, attrs):
    """Run `op` forward on the inputs' arrays and, when a gradient will be needed, record its node."""
    tensors = tuple([x if isinstance(x, Tensor) else _constant(op, x, inputs) for x in inputs])
    arrays = [t.data for t in tensors]
    ctx = Context(op, attrs)
    started = time.perf_counter() if settings.debug else 0.0
    data = op.forward(ctx, *arrays)
    if type(data) is not np.ndarray:
        data = np.asarray(data)
    if settings.debug:
        _debug_line("forward ", op.__name__, arrays, [data], started)
    out = Tensor.__new__(Tensor)
    out.data, out.grad, out.name, out._hooks, out.grad_fn = data, None, None, None, None
    needs_input_grad = tuple([t.requires_grad for t in tensors])
    out.requires_grad = settings.grad_enabled and True in needs_input_grad and data.dtype.kind == "f"
    if out.requires_grad or settings.detect_anomaly:
        ctx.location = user_location()
    if settings.detect_anomaly:
        _check_forward(ctx, arrays, data)
    if out.requires_grad:
        ctx.parents = tensors
        ctx.needs_input_grad = needs_input_grad
        ctx.scope = tuple(settings.module_stack) if settings.module_stack else ()
        ctx.output_ref = weakref.ref(out)
        out.grad_fn = ctx
    return out


Function.engine = apply_op


def topo_order(root, requiring_grad=True):
    """The tensors `root` was computed from, each after its inputs (first input first); iterative, so any depth works.

    With `requiring_grad` only those a gradient flows to (what backward walks), else constants and inputs too.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        tensor, inputs_done = stack.pop()
        if inputs_done:
            order.append(tensor)
            continue
        if id(tensor) in visited:
            continue
        visited.add(id(tensor))
        stack.append((tensor, True))
        if tensor.grad_fn is not None:
            for parent in reversed(tensor.grad_fn.parents):
                if (parent.requires_grad or not requiring_grad) and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _initial_grad(root, grad):
    if not root.requires_grad:
        raise RuntimeError(
            "backward(): this tensor does not require a gradient (no input had requires_grad=True, "
            "or it was made under no_grad())"
        )
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() on a tensor of shape {root.shape} needs grad= of that shape; "
                f"only a one-element tensor can start backward with the implicit gradient 1"
            )
        return np.ones_like(root.data)
    grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=root.dtype)
    if grad.shape != root.shape:
        raise ValueError(f"backward(grad=...): grad has shape {grad.shape} but the tensor has shape {root.shape}")
    return grad


def _as_grad_tuple(node, grads):
    """One gradient (or None) per input, each of its input's shape and dtype, or an error naming the op."""
    if type(grads) is not tuple:
        grads = (grads,)
    if len(grads) != len(node.parents):
        raise RuntimeError(
            f"{node.op_name}.backward returned {len(grads)} gradient(s) for {len(node.parents)} input(s)"
        )
    checked = []
    for index, grad in enumerate(grads):
        if grad is not None:
            expected = node.parents[index].data
            if type(grad) is not np.ndarray:
                grad = np.asarray(grad)
            if grad.shape != expected.shape:
                raise RuntimeError(
                    f"{node.op_name}.backward returned a gradient of shape {grad.shape} for input {index}, "
                    f"whose shape is {expected.shape}"
                )
            if grad.dtype != expected.dtype:
                grad = grad.astype(expected.dtype)
        checked.append(grad)
    return checked


def _run_hooks(tensor, grad):
    for hook in list(tensor._hooks):
        replaced = hook(Tensor(grad))
        if replaced is not None:
            grad = np.asarray(replaced.data if isinstance(replaced, Tensor) else replaced, dtype=tensor.dtype)
            if grad.shape != tensor.shape:
                raise RuntimeError(
                    f"a hook returned a gradient of shape {grad.shape} for a tensor of shape {tensor.shape}"
                )
    return grad


def backward_steps(root, grad=None, retain_graph=False):
    """The one backward loop. Yields `(node, grad_output, grad_inputs)` per node in the order it runs them.

    Walks the graph once in reverse topological order; each tensor's gradient is summed from every
    path before its node runs; leaves that require a gradient get it added to `.grad`.
    `backward()` drains this generator; the step-through debugger pauses on it.
    """
    grad = _initial_grad(root, grad)
    order = topo_order(root)
    released = [t.grad_fn for t in order if t.grad_fn is not None and t.grad_fn.released]
    if released:
        raise RuntimeError(
            f"backward through a released graph: the saved arrays of {released[0].op_name} (made at "
            f"{released[0].where}) were freed by an earlier backward(); pass retain_graph=True to the first "
            f"backward() to run it twice"
        )
    grads = {id(root): grad}
    for tensor in reversed(order):
        grad_output = grads.pop(id(tensor), None)
        if grad_output is None:
            continue
        if tensor._hooks:
            grad_output = _run_hooks(tensor, grad_output)
        node = tensor.grad_fn
        if node is None:
            accumulated = np.array(grad_output, dtype=tensor.dtype)
            tensor.grad = Tensor(accumulated if tensor.grad is None else tensor.grad.data + accumulated)
            continue
        started = time.perf_counter() if settings.debug else 0.0
        grad_inputs = _as_grad_tuple(node, node.op.backward(node, grad_output))
        if settings.debug:
            _debug_line("backward", node.op_name, [grad_output], [g for g in grad_inputs if g is not None], started)
        if settings.detect_anomaly:
            _check_backward(node, grad_output, grad_inputs)
        if not retain_graph:
            node.release()
        for parent, parent_grad in zip(node.parents, grad_inputs):
            if parent_grad is not None and parent.requires_grad:
                key = id(parent)
                previous = grads.get(key)
                grads[key] = parent_grad if previous is None else previous + parent_grad
        yield node, grad_output, tuple(grad_inputs)


def _debug_line(phase, op_name, inputs, outputs, started):
    micros = (time.perf_counter() - started) * 1e6
    print(f"{phase} {op_name:<28} {_describe(inputs)} -> {_describe(outputs)}  {micros:8.1f} us", file=sys.stderr)


def _check_forward(ctx, arrays, data):
    inputs_finite = all(np.all(np.isfinite(a)) for a in arrays if _is_float(a))
    if _is_float(data) and inputs_finite and not np.all(np.isfinite(data)):
        raise AnomalyError(
            f"{ctx.op_name} made a NaN or Inf from finite inputs ({_describe(arrays)}) at {ctx.where}"
        )


def _check_backward(node, grad_output, grad_inputs):
    if not np.all(np.isfinite(grad_output)):
        return
    for index, grad in enumerate(grad_inputs):
        if grad is not None and not np.all(np.isfinite(grad)):
            raise AnomalyError(
                f"{node.op_name}.backward sent a NaN or Inf gradient to input {index} "
                f"(shape {node.parents[index].shape}) from a finite upstream gradient; "
                f"the node was made at {node.where}"
            )
