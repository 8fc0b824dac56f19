"""Walking a finished graph: its tensors in topological order and the node that made each, for viz and debug."""

import operator

from tinygrad_sm.tensor import backward_steps, seed_gradient


def topo_order(root, requiring_grad=True):
    """The tensors `root` was computed from, each after its inputs: the leaves, then the made tensors in the order
    they were made. Iterative, so any depth works.

    With `requiring_grad` only those a gradient flows to (the nodes backward runs), else constants and inputs too.
    """
    leaves, made = [], []
    seen, stack = {id(root)}, [root]
    while stack:
        tensor = stack.pop()
        if tensor.grad_fn is None:
            leaves.append(tensor)
            continue
        made.append(tensor)
        for parent in tensor.grad_fn.parents:
            if id(parent) not in seen and (parent.requires_grad or not requiring_grad):
                seen.add(id(parent))
                stack.append(parent)
    leaves.reverse()
    made.sort(key=_sequence_number)
    return leaves + made


_sequence_number = operator.attrgetter("grad_fn.sequence_number")


def backward_order(output):
    """The nodes in the order `backward()` runs them: reverse topological, output's node first."""
    return [tensor.grad_fn for tensor in reversed(topo_order(output)) if tensor.grad_fn is not None]


def node_outputs(output):
    """{id(node): the tensor it made}, for every node backward from `output` runs (a node has no link to it)."""
    return {id(tensor.grad_fn): tensor for tensor in topo_order(output) if tensor.grad_fn is not None}


def backward_recording_grads(output, grad=None, retain_graph=False):
    """Run `output.backward(...)` and return {id(tensor): gradient array} for every op result it reached.

    The engine keeps gradients only on leaves (`.grad`, filled as usual); this keeps the intermediate ones too.
    """
    outputs = node_outputs(output)
    steps = backward_steps([output], [seed_gradient(output, grad)], retain_graph)
    return {id(outputs[id(node)]): grad_output for node, grad_output, _ in steps}


class ModuleIndex:
    """Where each nn.Module and parameter of a graph sits in its model: dotted paths from the outermost module.

    The outermost modules are those whose forward was running when a node was made (the first of its
    `scope`); `paths[id(module)]` is like "layers.0" ("" for an outermost module), `chains[id(module)]`
    the modules from the outermost one down to it, `parameters[id(tensor)]` is (path, owning module).
    """

    def __init__(self, tensors):
        roots, seen = [], set()
        for tensor in tensors:
            scope = tensor.grad_fn.scope if tensor.grad_fn is not None else ()
            if scope and id(scope[0]) not in seen:
                seen.add(id(scope[0]))
                roots.append(scope[0])
        # a sub-model run on its own keeps the path it has inside the bigger model
        roots.sort(key=lambda root: -sum(1 for _ in root.named_modules()))
        self.paths, self.chains, self.parameters = {}, {}, {}
        for root in roots:
            chain_of_prefix, module_of_prefix = {}, {}
            for prefix, module in root.named_modules():
                chain_of_prefix[prefix] = _nearest_enclosing(chain_of_prefix, prefix.rstrip("."), ()) + (module,)
                module_of_prefix[prefix] = module
                self.paths.setdefault(id(module), prefix.rstrip("."))
                self.chains.setdefault(id(module), chain_of_prefix[prefix])
            for path, parameter in root.named_parameters():
                self.parameters.setdefault(id(parameter), (path, _nearest_enclosing(module_of_prefix, path, root)))

    def label(self, module):
        """`layers.0: Linear`, or just the class name for an outermost (or unnamed) module."""
        path = self.paths.get(id(module), "")
        return f"{path}: {type(module).__name__}" if path else type(module).__name__


def _nearest_enclosing(by_prefix, path, default):
    """The entry of the nearest module enclosing dotted `path` ("layers.0.weight" -> that of "layers.0.")."""
    if not path:
        return default
    parts = path.split(".")
    for keep in range(len(parts) - 1, -1, -1):
        candidate = ".".join(parts[:keep]) + ("." if keep else "")
        if candidate in by_prefix:
            return by_prefix[candidate]
    return default
