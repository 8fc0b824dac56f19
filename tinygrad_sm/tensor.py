"""Tensor: a numpy array, its gradient, and the node that made it; recording ops and running backward."""

import copy
import heapq
import itertools
import warnings

import numpy as np

from tinygrad_sm import ops, watch
from tinygrad_sm.function import Context, user_code_position
from tinygrad_sm.grad_mode import settings
from tinygrad_sm.memory import keep_freed_memory

keep_freed_memory()  # the engine's arrays of one step reuse the memory the last step freed


class Tensor:
    """An n-dimensional array that remembers how it was made, so `backward()` can find its gradients.

    A Tensor made from a Python list or number is float32; from a numpy array it keeps the dtype.
    Only floating-point tensors can require a gradient.
    """

    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "name", "_hooks", "__weakref__")
    __array_ufunc__ = None  # numpy array (op) Tensor defers to Tensor's reflected operators; np.exp(t) is an error

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        if type(data) is not np.ndarray:
            data = _as_array(data, dtype)
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        if data.dtype.kind not in "biuf":
            raise TypeError(f"Tensor(data): dtype {data.dtype} is not numeric; expected bool, integer or float values")
        if requires_grad and data.dtype.kind != "f":
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
        """The same data (a view), cut from the graph: no node, no gradient."""
        return Tensor(self.data.view())

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        return bool(self.data)

    def __repr__(self):
        grad = f", grad_fn={self.grad_fn.op_name}" if self.grad_fn else ""
        flag = ", requires_grad=True" if self.requires_grad and not self.grad_fn else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=20)}, dtype={self.dtype}{flag}{grad})"

    # ---- recording ----
    @staticmethod
    def apply_op(op, inputs, attrs):
        """Run `op` forward on the inputs' arrays and, when a gradient will be needed, record its node."""
        ctx = Context(op, attrs)
        tensors, arrays, needs_input_grad = [], [], []
        for x in inputs:
            tensor = x if isinstance(x, Tensor) else _constant(x, inputs)
            tensors.append(tensor)
            arrays.append(tensor.data)
            needs_input_grad.append(tensor.requires_grad)
        out = Tensor(watch.forward(ctx, arrays) if watch.watching.active else np.asarray(op.forward(ctx, *arrays)))
        if settings.grad_enabled and True in needs_input_grad and out.data.dtype.kind == "f":
            ctx.parents = tuple(tensors)
            ctx.needs_input_grad = tuple(needs_input_grad)
            ctx.made_at = user_code_position()
            ctx.scope = tuple(settings.module_stack)
            ctx.sequence_number = next(_node_count)
            out.grad_fn = ctx
            out.requires_grad = True
        return out

    # ---- operators (numpy broadcasting) ----
    def __add__(self, other): return self.apply_op(ops.Add, (self, other), {})
    def __radd__(self, other): return self.apply_op(ops.Add, (other, self), {})
    def __sub__(self, other): return self.apply_op(ops.Sub, (self, other), {})
    def __rsub__(self, other): return self.apply_op(ops.Sub, (other, self), {})
    def __mul__(self, other): return self.apply_op(ops.Mul, (self, other), {})
    def __rmul__(self, other): return self.apply_op(ops.Mul, (other, self), {})
    def __truediv__(self, other): return self.apply_op(ops.Div, (self, other), {})
    def __rtruediv__(self, other): return self.apply_op(ops.Div, (other, self), {})
    def __pow__(self, other): return self.apply_op(ops.Pow, (self, other), {})
    def __rpow__(self, other): return self.apply_op(ops.Pow, (other, self), {})
    def __matmul__(self, other): return self.apply_op(ops.MatMul, (self, other), {})
    def __rmatmul__(self, other): return self.apply_op(ops.MatMul, (other, self), {})
    def __neg__(self): return self.apply_op(ops.Neg, (self,), {})

    # comparisons give boolean tensors that never require gradients
    def __lt__(self, other): return Tensor(self.data < _array_of(other, self))
    def __le__(self, other): return Tensor(self.data <= _array_of(other, self))
    def __gt__(self, other): return Tensor(self.data > _array_of(other, self))
    def __ge__(self, other): return Tensor(self.data >= _array_of(other, self))
    def __eq__(self, other): return Tensor(self.data == _array_of(other, self))
    def __ne__(self, other): return Tensor(self.data != _array_of(other, self))
    __hash__ = object.__hash__

    def __getitem__(self, index):
        return self.apply_op(ops.GetItem, (self,), {"index": _numpy_index(index)})

    # ---- elementwise functions ----
    def exp(self): return self.apply_op(ops.Exp, (self,), {})
    def log(self): return self.apply_op(ops.Log, (self,), {})
    def tanh(self): return self.apply_op(ops.Tanh, (self,), {})
    def sigmoid(self): return self.apply_op(ops.Sigmoid, (self,), {})
    def relu(self): return self.apply_op(ops.Relu, (self,), {})

    # ---- reductions ----
    def sum(self, axis=None, keepdims=False):
        return self.apply_op(ops.Sum, (self,), {"axis": _axis_arg(axis), "keepdims": keepdims})

    def mean(self, axis=None, keepdims=False):
        return self.apply_op(ops.Mean, (self,), {"axis": _axis_arg(axis), "keepdims": keepdims})

    def max(self, axis=None, keepdims=False):
        return self.apply_op(ops.Max, (self,), {"axis": _axis_arg(axis), "keepdims": keepdims})

    def softmax(self, axis=-1):
        return self.apply_op(ops.Softmax, (self,), {"axis": _axis_arg(axis)})

    def log_softmax(self, axis=-1):
        return self.apply_op(ops.LogSoftmax, (self,), {"axis": _axis_arg(axis)})

    def logsumexp(self, axis=-1, keepdims=False):
        return self.apply_op(ops.LogSumExp, (self,), {"axis": _axis_arg(axis), "keepdims": keepdims})

    # ---- shape ----
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return self.apply_op(ops.Reshape, (self,), {"shape": shape})

    def transpose(self, *axes):
        axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return self.apply_op(ops.Transpose, (self,), {"axes": axes or None})

    @property
    def T(self):
        return self.apply_op(ops.Transpose, (self,), {"axes": None})

    @property
    def mT(self):
        """The last two axes swapped (a batch of matrices transposed), as numpy's and PyTorch's `.mT`."""
        if self.ndim < 2:
            raise ValueError(f"mT needs a tensor with at least 2 dimensions, got shape {self.shape}")
        axes = (*range(self.ndim - 2), self.ndim - 1, self.ndim - 2)
        return self.apply_op(ops.Transpose, (self,), {"axes": axes})

    # ---- gradients ----
    def backward(self, grad=None, retain_graph=None, create_graph=False):
        """Fill `.grad` of every leaf that requires it with d(self)/d(leaf), accumulating like PyTorch.

        With `create_graph`, `.grad` holds Tensors that carry the graph of the backward pass (differentiable
        again) and `retain_graph` defaults to True. That makes a cycle parameter -> .grad -> graph ->
        parameter until `.grad = None` (`zero_grad()`); for gradient penalties `autograd.grad` needs none.
        """
        seed = seed_gradient(self, grad, create_graph)
        for _ in backward_steps([self], [seed], create_graph if retain_graph is None else retain_graph):
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


def _as_array(data, dtype):
    """What a Tensor holds for `data` that is not an ndarray: another Tensor's array (a warning if that drops its
    graph), a numpy scalar as a 0-d array, a list or number as float32 unless `dtype` says otherwise."""
    if isinstance(data, Tensor):
        if data.requires_grad:
            warnings.warn(
                "Tensor(t) of a tensor that requires grad makes a new leaf cut from t's graph (no gradient flows "
                "back to t); use t itself, or t.detach() to say you mean it",
                stacklevel=3,
            )
        return data.data
    if isinstance(data, (np.ndarray, np.generic)):
        array = np.asarray(data)
    elif data is None or not isinstance(data, (bool, int, float, list, tuple)):
        raise TypeError(
            f"Tensor(data): data must be a number, a (nested) list or a numpy array, got {type(data).__name__}"
        )
    else:
        array = np.asarray(data, dtype=dtype or np.float32)
    return array


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
    if isinstance(value, (bool, int, float)) and like.data.dtype.kind == "f":
        return np.array(value, like.data.dtype)
    if isinstance(value, Tensor):
        return value.data
    return np.asarray(value)


def _constant(value, inputs):
    """A number or array among an op's inputs, as a Tensor that takes the first Tensor input's dtype rule."""
    for like in inputs:
        if isinstance(like, Tensor):
            return Tensor(_array_of(value, like))


_node_count = itertools.count()  # numbers the recorded nodes in the order they were made


def seed_gradient(root, grad=None, create_graph=False):
    """The gradient backward starts from at `root`: `grad` as an array of root's shape and dtype, or 1; with
    `create_graph` a Tensor (a given Tensor as it is, so that the gradient is a function of it too)."""
    if create_graph and not settings.grad_enabled:
        raise RuntimeError("backward(create_graph=True) inside no_grad(): the backward's graph would not be recorded")
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
        grad = np.ones(root.shape, root.dtype)
    elif not (create_graph and isinstance(grad, Tensor)):
        grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=root.dtype)
    if grad.shape != root.shape:
        raise ValueError(f"backward(grad=...): grad has shape {grad.shape} but the tensor has shape {root.shape}")
    if not create_graph:
        return grad
    if not isinstance(grad, Tensor):
        return Tensor(grad)
    return grad if grad.dtype == root.dtype else ops.cast(grad, root.dtype)


def call_backward(node, grad_output, output=None):
    """The node's backward of `grad_output`, checked: one gradient per input, None for an input that needs none,
    each of its input's shape (else an error naming the op) and dtype (cast if not). A Tensor grad_output
    (create_graph) runs the backward on Tensors (`_backward_on_tensors`, which needs the node's `output`)."""
    if node.released:
        raise RuntimeError(
            f"backward through a released graph: the saved arrays of {node.op_name} (made at {node.where}) "
            f"were freed by an earlier backward(); pass retain_graph=True to the first backward() to run it twice"
        )
    if isinstance(grad_output, Tensor):
        grad_inputs = _backward_on_tensors(node, grad_output, output)
    else:
        grad_inputs = node.op.backward(node, grad_output)
    if type(grad_inputs) is not tuple:
        grad_inputs = (grad_inputs,)
    if len(grad_inputs) != len(node.parents):
        raise RuntimeError(
            f"{node.op_name}.backward returned {len(grad_inputs)} gradient(s) for {len(node.parents)} input(s)"
        )
    checked = []
    for grad, parent, needed in zip(grad_inputs, node.parents, node.needs_input_grad):
        if not needed:
            grad = None
        elif type(grad) is not type(grad_output) or grad.shape != parent.data.shape or grad.dtype != parent.data.dtype:
            grad = _as_gradient_of(parent, grad, node, len(checked), type(grad_output))
        checked.append(grad)
    return tuple(checked)


def _backward_on_tensors(node, grad_output, output):
    """create_graph: the op's backward on a copy of its node whose saved float arrays are Tensors in the graph:
    an input's array its input, the output's the output; any other is None (backward recomputes it)."""
    tensors = {id(tensor.data): tensor for tensor in (output, *node.parents) if tensor is not None}
    saved = []
    for value in node.saved_tensors:
        if isinstance(value, np.ndarray) and value.dtype.kind == "f":
            value = tensors.get(id(value))
        saved.append(value)
    on_tensors = copy.copy(node)
    on_tensors.saved_tensors = tuple(saved)
    first = next(_node_count)
    try:
        grad_inputs = node.op.backward(on_tensors, grad_output)
    except (TypeError, AttributeError) as error:
        raise RuntimeError(
            f"{node.op_name}.backward does not run on Tensors, which create_graph needs ({error}); write it with "
            f"operations arrays and Tensors share (+ - * / ** @, .sum, .reshape, ops.exp, ops.log, ...) and save "
            f"only its inputs, its output or non-float values (see examples/custom_op.py)"
        ) from error
    _mark_backward_of(node, grad_inputs, first)
    return grad_inputs


def _mark_backward_of(node, grad_inputs, first):
    """Set `backward_of = node` on the nodes the node's backward recorded: those numbered after `first`."""
    waiting = [grad for grad in (grad_inputs if type(grad_inputs) is tuple else (grad_inputs,))
               if isinstance(grad, Tensor)]
    while waiting:
        made = waiting.pop().grad_fn
        if made is not None and made.sequence_number > first and made.backward_of is None:
            made.backward_of = node
            waiting.extend(made.parents)


def _as_gradient_of(parent, grad, node, index, kind):
    """`grad` as a gradient of the parent's shape and dtype (cast if only the dtype differs) and of the kind the
    backward was given (array, or Tensor under create_graph), else an error naming the op."""
    if kind is Tensor and not isinstance(grad, Tensor):
        raise RuntimeError(
            f"{node.op_name}.backward returned a {type(grad).__name__}, not a Tensor, for input {index} under "
            f"create_graph: a second derivative through it would be silently zero; compute it from grad_output "
            f"and the saved values with operations arrays and Tensors share (see examples/custom_op.py)"
        )
    if kind is not Tensor:
        grad = np.asarray(grad)
    if grad.shape != parent.data.shape:
        raise RuntimeError(
            f"{node.op_name}.backward returned a gradient of shape {grad.shape} for input {index}, "
            f"whose shape is {parent.data.shape}"
        )
    return ops.cast(grad, parent.dtype) if grad.dtype != parent.dtype else grad


def run_hooks(tensor, grad):
    """`grad` after the tensor's hooks: each sees it and may return a replacement of the same shape."""
    for hook in list(tensor._hooks):
        replaced = hook(grad if isinstance(grad, Tensor) else Tensor(grad))
        if replaced is None:
            continue
        if isinstance(grad, Tensor):
            grad = replaced if isinstance(replaced, Tensor) else Tensor(np.asarray(replaced, dtype=tensor.dtype))
        else:
            grad = np.asarray(replaced.data if isinstance(replaced, Tensor) else replaced, dtype=tensor.dtype)
        if grad.shape != tensor.shape:
            raise RuntimeError(f"a hook returned a gradient of shape {grad.shape} for a tensor of shape {tensor.shape}")
    return grad


def backward_steps(roots, grad_outputs, retain_graph=False, captured=None):
    """The one backward loop, from the roots with their gradients (see `seed_gradient`): yields (node,
    grad_output, grad_inputs) per node. The newest waiting node runs first: all its consumers were made after it,
    so its gradient is complete. At the end the leaves' gradients go to `.grad`, or, for the tensors whose id
    is a key of `captured` (autograd.grad), into that dict instead, for every tensor.
    """
    grads, waiting, leaves = {}, [], []
    for root, grad in zip(roots, grad_outputs):
        _pass_on(root, grad, grads, waiting, leaves)
    while waiting:
        tensor = heapq.heappop(waiting)[1]
        grad_output = grads.pop(id(tensor))
        if tensor._hooks:
            grad_output = run_hooks(tensor, grad_output)
        if captured is not None and id(tensor) in captured:
            captured[id(tensor)] = grad_output
        node = tensor.grad_fn
        if watch.watching.active:
            grad_inputs = watch.backward(node, grad_output, tensor, call_backward)
        else:
            grad_inputs = call_backward(node, grad_output, tensor)
        for parent, grad in zip(node.parents, grad_inputs):
            if grad is not None:
                _pass_on(parent, grad, grads, waiting, leaves)
        if not retain_graph:
            node.release()
        yield node, grad_output, grad_inputs
    for leaf in leaves:
        grad = grads.pop(id(leaf))
        if leaf._hooks:
            grad = run_hooks(leaf, grad)
        if captured is None:
            _accumulate_grad(leaf, grad)
        elif id(leaf) in captured:
            captured[id(leaf)] = grad


def _pass_on(tensor, grad, grads, waiting, leaves):
    """Add `grad` to the tensor's gradient; on its first one a made tensor waits in the heap, newest first, a
    leaf waits for the end."""
    key = id(tensor)
    if key in grads:
        grads[key] = grads[key] + grad
    elif tensor.grad_fn is None:
        grads[key] = grad
        leaves.append(tensor)
    else:
        grads[key] = grad
        heapq.heappush(waiting, (-tensor.grad_fn.sequence_number, tensor))


def _accumulate_grad(leaf, grad):
    """`leaf.grad += grad`: a copy of an array (no gradient array is shared), a Tensor under create_graph as is."""
    if isinstance(grad, Tensor):
        leaf.grad = grad if leaf.grad is None else leaf.grad + grad
    else:
        leaf.grad = Tensor(grad.copy() if leaf.grad is None else leaf.grad.data + grad)
