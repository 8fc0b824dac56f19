"""Walking a finished graph: its tensors in topological order and the node that made each, for viz and debug."""

from tinygrad_sm.tensor import topo_order


def tensors_in_order(output):
    """Every tensor `output` was computed from (constants and inputs included), each after its inputs."""
    order, visited = [], set()
    stack = [(output, False)]
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
            stack.extend((parent, False) for parent in reversed(tensor.grad_fn.parents) if id(parent) not in visited)
    return order


def backward_order(output):
    """The nodes in the order `backward()` runs them: reverse topological, output's node first."""
    return [tensor.grad_fn for tensor in reversed(topo_order(output)) if tensor.grad_fn is not None]


def edges(output):
    """(input tensor, output tensor) pairs, one per input slot of every node."""
    return [
        (parent, tensor)
        for tensor in tensors_in_order(output)
        if tensor.grad_fn is not None
        for parent in tensor.grad_fn.parents
    ]
