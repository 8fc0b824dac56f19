"""Function, the base of every op, and Context, the node an op leaves in the graph.

A Function is pure numpy math: `forward(ctx, *arrays)` and `backward(ctx, grad_output)` see
arrays, never Tensors. The engine in tensor.py runs them and records the node.
"""

import os


class Context:
    """One op applied once: what its backward needs, and, once recorded, a node of the graph.

    `ctx.save_for_backward(*arrays)` keeps arrays for backward (`ctx.saved_tensors`); the op's keyword
    attributes (axis, keepdims, shape, ...) are in `ctx.attrs` and readable as `ctx.axis`. The engine
    fills in `parents` (the input Tensors), `needs_input_grad`, `location` (file and line of the user
    code that made it), `scope` (the nn.Modules whose forward was running), `sequence_number` (nodes
    are numbered as they are made; backward runs them in the reverse order) and `output_ref` (a weak
    reference to the Tensor it made).
    """

    saved_tensors = needs_input_grad = parents = scope = ()
    location = output_ref = None
    released = False

    def __init__(self, op, attrs):
        self.op = op
        self.attrs = attrs

    def __getattr__(self, name):
        attrs = self.__dict__.get("attrs", {})
        if name in attrs:
            return attrs[name]
        raise AttributeError(f"{type(self).__name__} of op {self.op_name} has no attribute {name!r}")

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @property
    def op_name(self):
        return self.op.__name__

    @property
    def output(self):
        """The Tensor this node produced, while something still holds it (else None)."""
        return self.output_ref() if self.output_ref is not None else None

    def release(self):
        """Free the saved arrays; a second backward through this node then raises."""
        self.saved_tensors = ()
        self.released = True

    @property
    def where(self):
        """`file:line` of the user code that made this node (relative to the working directory when under it)."""
        if self.location is None:
            return "an unknown place"
        path, line = self.location
        relative = os.path.relpath(path)
        return f"{path if relative.startswith('..') else relative}:{line}"

    def __repr__(self):
        return f"<{self.op_name} node at {self.where}>"


class Function:
    """Base of every op. Subclass it, write `forward` and `backward` as static methods on numpy arrays.

    `backward(ctx, grad_output)` returns one gradient per input (a tuple when there are several),
    each of its input's shape, or None for an input that needs none (see `ctx.needs_input_grad`).
    """

    engine = None  # set by tinygrad_sm.tensor: engine(op, inputs, attrs) -> Tensor

    @staticmethod
    def forward(ctx, *arrays):
        raise NotImplementedError("a Function subclass must define forward(ctx, *arrays) as a staticmethod")

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("a Function subclass must define backward(ctx, grad_output) as a staticmethod")

    @classmethod
    def apply(cls, *inputs, **attrs):
        """Run this op on Tensors (numbers and arrays become constants) and record its node."""
        return Function.engine(cls, inputs, attrs)
