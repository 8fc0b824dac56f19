"""Tensor: a numpy array, its gradient, and the node that made it; the engine that runs ops and backward."""

import heapq
import itertools
import os
import sys
import time

import numpy as np

from tinygrad_sm import ops
from tinygrad_sm.function import Context, Function

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# the package's source files: a frame whose code came from one of them is the package's (a set lookup of the
# frame's file name, whose hash Python keeps, is cheaper than a prefix test, and it runs for every frame walked)
PACKAGE_FILES = frozenset(os.path.join(_PACKAGE_DIR, name) for name in os.listdir(_PACKAGE_DIR))


class _Settings:
    """Engine-wide switches: grad mode (`no_grad`), anomaly detection (`debug.detect_anomaly`), and
    `TINYGRAD_SM_DEBUG=1`, which prints one line per op as it runs, forward and backward."""

    def __init__(self):
        self.grad_enabled = True
        self.detect_anomaly = False
        self.debug = os.environ.get("TINYGRAD_SM_DEBUG", "0") not in ("", "0")
        self.module_stack = []  # the nn.Modules whose forward is running, outermost first


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


def user_code_position(frame):
    """(code object, instruction offset) of the innermost frame from `frame` outwards that lies outside this
    package: where user code made the node (`Context.location` turns it into file and line)."""
    while frame is not None and frame.f_code.co_filename in PACKAGE_FILES:
        frame = frame.f_back
    return (frame.f_code, frame.f_lasti) if frame is not None else None


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
    def __add__(self, other): return apply_op(ops.Add, (self, other), {})
    def __radd__(self, other): return apply_op(ops.Add, (other, self), {})
    def __sub__(self, other): return apply_op(ops.Sub, (self, other), {})
    def __rsub__(self, other): return apply_op(ops.Sub, (other, self), {})
    def __mul__(self, other): return apply_op(ops.Mul, (self, other), {})
    def __rmul__(self, other): return apply_op(ops.Mul, (other, self), {})
    def __truediv__(self, other): return apply_op(ops.Div, (self, other), {})
    def __rtruediv__(self, other): return apply_op(ops.Div, (other, self), {})
    def __pow__(self, other): return apply_op(ops.Pow, (self, other), {})
    def __rpow__(self, other): return apply_op(ops.Pow, (other, self), {})
    def __matmul__(self, other): return apply_op(ops.MatMul, (self, other), {})
    def __rmatmul__(self, other): return apply_op(ops.MatMul, (other, self), {})
    def __neg__(self): return apply_op(ops.Neg, (self,), {})

    # comparisons give boolean tensors that never require gradients
    def __lt__(self, other): return Tensor(self.data < _array_of(other, self))
    def __le__(self, other): return Tensor(self.data <= _array_of(other, self))
    def __gt__(self, other): return Tensor(self.data > _array_of(other, self))
    def __ge__(self, other): return Tensor(self.data >= _array_of(other, self))
    def __eq__(self, other): return Tensor(self.data == _array_of(other, self))
    def __ne__(self, other): return Tensor(self.data != _array_of(other, self))
    __hash__ = object.__hash__

    def __getitem__(self, index):
        return apply_op(ops.GetItem, (self,), {"index": _numpy_index(index)})

    # ---- elementwise functions ----
    def exp(self): return apply_op(ops.Exp, (self,), {})
    def log(self): return apply_op(ops.Log, (self,), {})
    def tanh(self): return apply_op(ops.Tanh, (self,), {})
    def sigmoid(self): return apply_op(ops.Sigmoid, (self,), {})
    def relu(self): return apply_op(ops.Relu, (self,), {})

    # ---- reductions ----
    def sum(self, axis=None, keepdims=False):
        return apply_op(ops.Sum, (self,), {"axis": _axis_arg(axis), "keepdims": keepdims})

    def mean(self, axis=None, keepdims=False):
        return apply_op(ops.Mean, (self,), {"axis": _axis_arg(axis), "keepdims": keepdims})

    def max(self, axis=None, keepdims=False):
        return apply_op(ops.Max, (self,), {"axis": _axis_arg(axis), "keepdims": keepdims})

    def softmax(self, axis=-1):
        return apply_op(ops.Softmax, (self,), {"axis": _axis_arg(axis)})

    def log_softmax(self, axis=-1):
        return apply_op(ops.LogSoftmax, (self,), {"axis": _axis_arg(axis)})

    def logsumexp(self, axis=-1, keepdims=False):
        return apply_op(ops.LogSumExp, (self,), {"axis": _axis_arg(axis), "keepdims": keepdims})

    # ---- shape ----
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return apply_op(ops.Reshape, (self,), {"shape": shape})

    def transpose(self, *axes):
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return apply_op(ops.Transpose, (self,), {"axes": axes or None})

    @property
    def T(self):
        return apply_op(ops.Transpose, (self,), {"axes": None})

    # ---- gradients ----
    def backward(self, grad=None, retain_graph=False):
        """Fill `.grad` of every leaf that requires it with d(self)/d(leaf), accumulating like PyTorch."""
        for _ in backward_steps(self, grad, retain_graph, reuse_gradients=True):
            pass

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
    """Run `op` forward on the inputs' arrays and, when a gradient will be needed, record its node.

    Called by `Function.apply`, Tensor's methods and functional's fused losses and linear; the code that called
    any of them is two frames up (looking it up there, not frame by frame, spares Python from building a frame
    object per call).
    """
    tensors = inputs
    for x in inputs:
        if not isinstance(x, Tensor):
            tensors = tuple([x if isinstance(x, Tensor) else _constant(op, x, inputs) for x in inputs])
            break
    arrays, requires = [], []
    for t in tensors:  # one loop, not two list comprehensions: Python 3.11 builds and calls a function for each
        arrays.append(t.data)
        requires.append(t.requires_grad)
    ctx = Context(op, attrs)
    if settings.debug or settings.detect_anomaly:
        data = _forward_watched(ctx, arrays)
    else:
        data = op.forward(ctx, *arrays)
        if type(data) is not np.ndarray:
            data = np.asarray(data)
    out = Tensor.__new__(Tensor)
    out.data, out.grad, out.requires_grad, out.grad_fn, out.name, out._hooks = data, None, False, None, None, None
    if settings.grad_enabled and data.dtype.kind == "f":
        if True in requires:
            ctx.parents = tensors
            ctx.needs_input_grad = tuple(requires)
            ctx.made_at = user_code_position(sys._getframe(2))
            if settings.module_stack:
                ctx.scope = tuple(settings.module_stack)
            ctx.sequence_number = next(_node_count)
            out.grad_fn = ctx
            out.requires_grad = True
    return out


_node_count = itertools.count()  # numbers the recorded nodes in the order they were made


def _forward_watched(ctx, arrays):
    """The op's forward under `TINYGRAD_SM_DEBUG` (one timed line) or `detect_anomaly` (a NaN/Inf from finite
    inputs raises)."""
    started = time.perf_counter()
    data = np.asarray(ctx.op.forward(ctx, *arrays))
    if settings.debug:
        _debug_line("forward ", ctx.op_name, arrays, [data], time.perf_counter() - started)
    if settings.detect_anomaly:
        ctx.made_at = user_code_position(sys._getframe(3))
        _check_forward(ctx, arrays, data)
    return data


Function.engine = apply_op


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
        seed = np.empty(root.data.shape, root.data.dtype)
        seed.fill(1)
        return seed
    grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=root.dtype)
    if grad.shape != root.shape:
        raise ValueError(f"backward(grad=...): grad has shape {grad.shape} but the tensor has shape {root.shape}")
    return grad


def _as_input_grad(node, index, grad):
    """What backward returned for input `index`, as an array of that input's shape and dtype (cast when only the
    dtype differs, as after a float32 * float64 op), or an error naming the op."""
    expected = node.parents[index].data
    grad = np.asarray(grad)
    if grad.shape != expected.shape:
        raise RuntimeError(
            f"{node.op_name}.backward returned a gradient of shape {grad.shape} for input {index}, "
            f"whose shape is {expected.shape}"
        )
    return grad.astype(expected.dtype, copy=False)


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


def backward_steps(root, grad=None, retain_graph=False, reuse_gradients=False):
    """The one backward loop. Yields `(node, grad_output, grad_inputs)` per node in the order it runs them.

    Tensors whose gradient has started to arrive wait in a heap and the newest node runs first: every
    tensor's consumers were made after it, so by then its gradient is summed from every path (the reverse
    of the order the nodes were made, as PyTorch's engine orders by sequence number). Leaves that require
    a gradient get it added to `.grad` at the end, so a node released by an earlier backward raises before
    any `.grad` changes. `backward()` drains this generator; the step-through debugger pauses on it.

    Each gradient that flows on to an input requiring one is checked, as PyTorch's engine checks it: an array
    of the input's shape (else an error naming the op) and dtype (cast if not). A gradient for an input that
    needs none is dropped unseen.

    With `reuse_gradients` (what `backward()` asks, as nobody looks at the gradients on the way) nothing is
    yielded, and an array nothing else holds is used where it is, not copied: an op that overwrites its
    grad_output (Relu) gets the engine's own, and a leaf keeps its gradient as `.grad` (PyTorch's AccumulateGrad
    steals it too); so a ReLU layer's backward needs no new array, nor a weight's gradient a copy.
    """
    grads = {id(root): _initial_grad(root, grad)}
    waiting = [] if root.grad_fn is None else [(-root.grad_fn.sequence_number, root)]
    leaves = [root] if root.grad_fn is None else []
    watched = settings.debug or settings.detect_anomaly
    reuse_gradients = reuse_gradients and not watched
    while waiting:
        tensor = heapq.heappop(waiting)[1]
        grad_output = grads.pop(id(tensor))
        if tensor._hooks:
            grad_output = _run_hooks(tensor, grad_output)
        node = tensor.grad_fn
        if node.released:
            raise RuntimeError(
                f"backward through a released graph: the saved arrays of {node.op_name} (made at {node.where}) "
                f"were freed by an earlier backward(); pass retain_graph=True to the first backward() to run it twice"
            )
        if node.op.overwrites_grad_output and not (reuse_gradients and _is_spare(grad_output)):
            given = grad_output.copy()
        else:
            given = grad_output
        if watched:
            started = time.perf_counter()
        grad_inputs = node.op.backward(node, given)
        if watched:
            seconds = time.perf_counter() - started
        if type(grad_inputs) is not tuple:
            grad_inputs = (grad_inputs,)
        if len(grad_inputs) != len(node.parents):
            raise RuntimeError(
                f"{node.op_name}.backward returned {len(grad_inputs)} gradient(s) for {len(node.parents)} input(s)"
            )
        for index, parent in enumerate(node.parents):
            parent_grad = grad_inputs[index]
            if parent_grad is None or not parent.requires_grad:
                continue
            expected = parent.data
            if (
                type(parent_grad) is not np.ndarray
                or parent_grad.shape != expected.shape
                or parent_grad.dtype != expected.dtype
            ):
                parent_grad = _as_input_grad(node, index, parent_grad)
                grad_inputs = (*grad_inputs[:index], parent_grad, *grad_inputs[index + 1:])
            key = id(parent)
            previous = grads.get(key)
            if previous is None:
                grads[key] = parent_grad
                if parent.grad_fn is None:
                    leaves.append(parent)
                else:
                    heapq.heappush(waiting, (-parent.grad_fn.sequence_number, parent))
            else:
                grads[key] = previous + parent_grad
        if watched:
            _watch_backward(node, given, grad_inputs, seconds)
        if not retain_graph:
            node.release()
        if not reuse_gradients:
            yield node, grad_output, grad_inputs
        del given, grad_inputs, parent_grad  # held over, they would keep the next node's gradient from being spare
    for tensor in leaves:
        grad_output = grads.pop(id(tensor))
        if tensor._hooks:
            grad_output = _run_hooks(tensor, grad_output)
        if tensor.grad is not None:
            tensor.grad = Tensor(tensor.grad.data + grad_output)
        elif reuse_gradients and _is_spare(grad_output):
            tensor.grad = Tensor(grad_output)  # nothing else holds it: the leaf keeps it (PyTorch's AccumulateGrad too)
        else:
            tensor.grad = Tensor(grad_output.copy())


def _is_spare(array):
    """True when the caller's variable is the only reference to `array`, an array of its own that may be written
    (the test NumPy makes before reusing a temporary): no other tensor waits for it, no hook, user or op kept it."""
    return array.base is None and array.flags.writeable and sys.getrefcount(array) == _ALONE


def _references_when_alone():
    """What `sys.getrefcount` says inside `_is_spare` of an array held by one variable of its caller."""

    def probe(array):
        return sys.getrefcount(array)

    array = np.empty(0)
    return probe(array)


_ALONE = _references_when_alone()


def _watch_backward(node, grad_output, grad_inputs, seconds):
    """A node's gradients, as checked, under `TINYGRAD_SM_DEBUG` (one line: its backward took `seconds`) or
    `detect_anomaly` (checked for NaN/Inf)."""
    if settings.debug:
        shown = [np.asarray(g) for g in grad_inputs if g is not None]
        _debug_line("backward", node.op_name, [grad_output], shown, seconds)
    if settings.detect_anomaly:
        _check_backward(node, grad_output, grad_inputs)


def _debug_line(phase, op_name, inputs, outputs, seconds):
    micros = seconds * 1e6
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
