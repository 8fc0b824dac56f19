"""Function, the base of every op, and Context, the node an op leaves in the graph.

A Function is numpy math: `forward(ctx, *arrays)` sees arrays; `backward(ctx, grad_output)` sees arrays, or,
under create_graph, Tensors (so that the gradient it computes is recorded too). The engine in tensor.py runs
them and records the node.
"""

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
PACKAGE_FILES = frozenset(os.path.join(_PACKAGE_DIR, name) for name in os.listdir(_PACKAGE_DIR))


class Context:
    """One op applied once: what its backward needs, and, once recorded, a node of the graph.

    `ctx.save_for_backward(*arrays)` keeps arrays for backward (`ctx.saved_tensors`); the op's keyword
    attributes (axis, keepdims, shape, ...) are in `ctx.attrs` and are attributes too (`ctx.axis`). The engine
    fills in `parents` (the input Tensors), `needs_input_grad`, `made_at` (the code object and instruction
    offset of the user code that made it; `location` turns it into file and line when asked), `scope` (the
    nn.Modules whose forward was running) and `sequence_number` (nodes are numbered as they are made; backward
    runs them in the reverse order); a node recorded by a create_graph backward has in `backward_of` the node
    whose backward made it. Like PyTorch's grad_fn, a node does not point to the tensor it made:
    `walk.node_outputs` finds them by walking from the output.
    """

    def __init__(self, op, attrs):
        self.op = op
        self.attrs = attrs
        self.saved_tensors = self.parents = self.needs_input_grad = self.scope = ()
        self.made_at = self.sequence_number = self.backward_of = None
        self.released = False
        if attrs:
            for name, value in attrs.items():
                if hasattr(self, name):
                    raise TypeError(f"{op.__name__}: an op attribute cannot be named {name!r}, the node uses that name")
                setattr(self, name, value)

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @property
    def op_name(self):
        return self.op.__name__

    def release(self):
        """Free the saved arrays; a second backward through this node then raises."""
        self.saved_tensors = ()
        self.released = True

    @property
    def location(self):
        """(file, line) of the user code that made this node, or None."""
        if self.made_at is None:
            return None
        code, offset = self.made_at
        return code.co_filename, line_at(code, offset)

    @property
    def where(self):
        """`file:line` of the user code that made this node (relative to the working directory when under it)."""
        if self.made_at is None:
            return "an unknown place"
        path, line = self.location
        relative = os.path.relpath(path)
        return f"{path if relative.startswith('..') else relative}:{line}"

    def __repr__(self):
        return f"<{self.op_name} node at {self.where}>"


def user_code_position():
    """(code object, instruction offset) of the innermost caller outside this package of the package function that
    asks: where user code made a node (`Context.location` turns it into file and line only when asked)."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename in PACKAGE_FILES:
        frame = frame.f_back
    return (frame.f_code, frame.f_lasti) if frame is not None else None


def line_at(code, offset):
    """The source line of the instruction at byte `offset` in `code` (what `frame.f_lineno` computes, done only
    when someone asks, not for every node)."""
    return next(line for start, end, line in code.co_lines() if start <= offset < end)


class Function:
    """Base of every op. Subclass it, write `forward` and `backward` as static methods on numpy arrays.

    `backward(ctx, grad_output)` returns one gradient per input (a tuple when there are several), each of its
    input's shape, or None for an input that needs none (see `ctx.needs_input_grad`); it must not change
    grad_output. The engine checks each gradient: of the wrong shape it raises, of another dtype it is cast.

    Twice differentiable (create_graph): write backward in operations arrays and Tensors share (+ - * / ** @,
    .sum, .reshape, .T, ops.exp, ops.log, ops.sigmoid, ...) and save only the inputs, the output, or values that
    are not floats (masks, shapes, indices). Under create_graph backward then gets Tensors: the inputs' and the
    output's saved arrays as those Tensors, any other saved float array as None (recompute it from the inputs).
    A backward that cannot run on Tensors raises an error naming the op (examples/custom_op.py).
    """

    @staticmethod
    def forward(ctx, *arrays):
        raise NotImplementedError("a Function subclass must define forward(ctx, *arrays) as a staticmethod")

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("a Function subclass must define backward(ctx, grad_output) as a staticmethod")

    @classmethod
    def apply(cls, *inputs, **attrs):
        """Run this op on the inputs (numbers and arrays become constants) and record its node. The Tensor among
        the inputs does it (`Tensor.apply_op`): the engine comes with the Tensors, so this file imports none."""
        for x in inputs:
            if hasattr(x, "apply_op"):
                return x.apply_op(cls, inputs, attrs)
        raise TypeError(f"{cls.__name__}.apply needs at least one Tensor among its inputs")
