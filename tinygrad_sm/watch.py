"""Watching the engine run: `TINYGRAD_SM_DEBUG=1` prints one line per op, forward and backward, and
`detect_anomaly()` raises `AnomalyError` at the first op that makes a NaN or Inf from finite values."""

import contextlib
import os
import sys
import time

import numpy as np

from tinygrad_sm.function import user_code_position


class AnomalyError(FloatingPointError):
    """A NaN or Inf first appeared at a node (raised under `detect_anomaly()`)."""


class _Watching:
    """What is watched: `print_ops` (TINYGRAD_SM_DEBUG) and `detect_anomaly`; the engine reads `active` (either)
    per op."""

    def __init__(self):
        self.print_ops = os.environ.get("TINYGRAD_SM_DEBUG", "0") not in ("", "0")
        self.detect_anomaly = False
        self.active = self.print_ops


watching = _Watching()


@contextlib.contextmanager
def detect_anomaly():
    """Inside the block, the first op whose value or gradient turns non-finite from finite inputs raises
    `AnomalyError` naming the op, where it was made and (in backward) the input whose gradient went bad.
    numpy's own divide/invalid/overflow warnings are silenced there: the error says more."""
    previous = watching.detect_anomaly
    watching.detect_anomaly = watching.active = True
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            yield
    finally:
        watching.detect_anomaly = previous
        watching.active = watching.print_ops or previous


def forward(ctx, arrays):
    """`ctx.op.forward` on `arrays`, printed and timed, or checked for a NaN/Inf made from finite inputs."""
    started = time.perf_counter()
    data = np.asarray(ctx.op.forward(ctx, *arrays))
    if watching.print_ops:
        _print_line("forward ", ctx.op_name, arrays, [data], time.perf_counter() - started)
    if watching.detect_anomaly and _is_float(data) and _all_finite(arrays) and not np.all(np.isfinite(data)):
        ctx.made_at = user_code_position()
        raise AnomalyError(f"{ctx.op_name} made a NaN or Inf from finite inputs ({_describe(arrays)}) at {ctx.where}")
    return data


def backward(node, grad_output, output, call_backward):
    """`call_backward(node, grad_output, output)`, printed and timed, or checked for a NaN/Inf from a finite
    gradient (arrays, or the arrays of Tensors under create_graph)."""
    started = time.perf_counter()
    grad_inputs = call_backward(node, grad_output, output)
    if watching.print_ops:
        shown = [g for g in grad_inputs if g is not None]
        _print_line("backward", node.op_name, [grad_output], shown, time.perf_counter() - started)
    if watching.detect_anomaly and np.all(np.isfinite(_array(grad_output))):
        for index, grad in enumerate(grad_inputs):
            if grad is not None and not np.all(np.isfinite(_array(grad))):
                raise AnomalyError(
                    f"{node.op_name}.backward sent a NaN or Inf gradient to input {index} "
                    f"(shape {node.parents[index].shape}) from a finite upstream gradient; "
                    f"the node was made at {node.where}"
                )
    return grad_inputs


def _array(value):
    """An array, or a Tensor's array (the engine's Tensor is not imported here: it is above this module)."""
    return value if isinstance(value, np.ndarray) else value.data


def _is_float(array):
    return array.dtype.kind == "f"


def _all_finite(arrays):
    return all(np.all(np.isfinite(a)) for a in arrays if _is_float(a))


def _describe(arrays):
    return ", ".join(f"{a.shape} {a.dtype}" for a in arrays)


def _print_line(phase, op_name, inputs, outputs, seconds):
    micros = seconds * 1e6
    print(f"{phase} {op_name:<28} {_describe(inputs)} -> {_describe(outputs)}  {micros:8.1f} us", file=sys.stderr)
