"""Where each tensor of a drawn graph goes: its kind, the module cluster it sits in (or the one node of a
collapsed module), and the DOT lines of the clusters and the edges."""

from tinygrad_sm.function import Context
from tinygrad_sm.tensor import Tensor
from tinygrad_sm.viz_labels import CLUSTER_FILLS, MUTED, _attr_list, _shape_text
from tinygrad_sm.walk import ModuleIndex, topo_order


class GraphLayout:
    """The tensors `output` was computed from, which kind each is and where each is drawn."""

    def __init__(self, output, collapse):
        self.output, self.collapse = output, collapse
        self.tensors = topo_order(output, requiring_grad=False)
        self.index = {id(tensor): position for position, tensor in enumerate(self.tensors)}
        self.made_by = {id(t.grad_fn): t for t in self.tensors if t.grad_fn is not None}
        self.modules = ModuleIndex(self.tensors)
        self.consumers = {}
        for tensor in self.tensors:
            if tensor.grad_fn is not None:
                for parent in tensor.grad_fn.parents:
                    self.consumers.setdefault(id(parent), []).append(tensor)

    def members_of(self, option, items):
        """The ids of the tensors named by `items` (Tensors or Contexts, one or several)."""
        if isinstance(items, (Tensor, Context)):
            items = (items,)
        chosen = set()
        for item in items:
            if not isinstance(item, (Tensor, Context)):
                raise TypeError(f"draw_graph: {option} takes nodes (Context) or Tensors, got {type(item).__name__}")
            tensor = self.made_by.get(id(item)) if isinstance(item, Context) else item
            if tensor is None or id(tensor) not in self.index:
                raise ValueError(f"draw_graph: {option} names {item!r}, which is not part of this graph")
            chosen.add(id(tensor))
        return frozenset(chosen)

    # ---- where each tensor goes ----

    def scope_of(self, tensor):
        """The modules (outermost first) a tensor belongs to: its node's scope, a parameter's owner."""
        if tensor.grad_fn is not None:
            return tensor.grad_fn.scope
        if id(tensor) in self.modules.parameters:
            owner = self.modules.parameters[id(tensor)][1]
            return self.modules.chains.get(id(owner), ())
        if self.kind(tensor) == "constant":
            scopes = {tuple(map(id, self.scope_of(c))): self.scope_of(c) for c in self.consumers.get(id(tensor), [])}
            if len(scopes) == 1:
                return next(iter(scopes.values()))
        return ()

    def unit_of(self, scope):
        """With collapse: the chain of modules down to the one drawn as a single node (None: not collapsed)."""
        if not self.collapse or not scope:
            return None
        if len(scope) >= 2:
            return scope[:2]
        has_submodules = any(module is not scope[0] for _, module in scope[0].named_modules())
        return None if has_submodules else scope[:1]

    def kind(self, tensor):
        if tensor is self.output:
            return "output"
        if tensor.grad_fn is not None:
            return "op"
        if id(tensor) in self.modules.parameters:
            return "parameter"
        if tensor.name is None and tensor.ndim == 0 and not tensor.requires_grad:
            return "constant"
        return "input"

    def arrange(self, labels):
        """Every node's DOT name and attributes in its cluster: ({tuple of module ids: (modules, [(name, attrs)])},
        {id(tensor): the name of the node it is drawn in})."""
        clusters = {}
        units = {}  # tuple of module ids -> the tensors drawn as that one module node
        representative = {}
        for tensor in self.tensors:
            scope = self.scope_of(tensor)
            unit = self.unit_of(scope) if tensor is not self.output and self.kind(tensor) != "input" else None
            if unit is not None:
                key = tuple(map(id, unit))
                units.setdefault(key, (unit, []))[1].append(tensor)
                representative[id(tensor)] = f"m{self.index[id(units[key][1][0])]}"
                continue
            name = f"t{self.index[id(tensor)]}"
            representative[id(tensor)] = name
            self.place(clusters, scope, name, labels.tensor_attrs(tensor))
        for unit, members in units.values():
            name = representative[id(members[0])]
            self.place(clusters, unit[:-1], name, labels.module_attrs(unit[-1], members))
        return clusters, representative

    def place(self, clusters, scope, name, attrs):
        key = tuple(map(id, scope))
        for depth in range(len(scope) + 1):
            clusters.setdefault(key[:depth], (scope[:depth], []))
        clusters[key][1].append((name, attrs))

    def add_clusters(self, graph, clusters):
        """Nodes into nested `subgraph cluster_N` blocks, written as DOT lines directly (thousands of nodes)."""
        children = {}
        for key in clusters:
            if key:
                children.setdefault(key[:-1], []).append(key)
        numbers = {key: number for number, key in enumerate(sorted(clusters, key=len))}

        def lines_of(key, indent):
            lines = []
            if key:
                module = clusters[key][0][-1]
                style = {
                    "label": self.modules.label(module), "style": "rounded,filled",
                    "fillcolor": CLUSTER_FILLS[min(len(key) - 1, len(CLUSTER_FILLS) - 1)],
                    "color": "#cbd5e1", "fontcolor": "#334155", "fontsize": "11", "labeljust": "l",
                }
                lines += [f"{indent}subgraph cluster_{numbers[key]} {{\n", f"{indent}\tgraph [{_attr_list(style)}]\n"]
            inner = indent + "\t" if key else indent
            lines += [f"{inner}{name} [{_attr_list(attrs)}]\n" for name, attrs in clusters[key][1]]
            for child in children.get(key, []):
                lines += lines_of(child, inner)
            if key:
                lines.append(f"{indent}}}\n")
            return lines

        graph.body.extend(lines_of((), "\t"))

    def add_edges(self, graph, representative):
        drawn = set()
        for tensor in self.tensors:
            if tensor.grad_fn is None:
                continue
            head = representative[id(tensor)]
            for parent in tensor.grad_fn.parents:
                tail = representative[id(parent)]
                if tail == head:
                    continue
                collapsed = head.startswith("m") or tail.startswith("m")
                if collapsed:
                    if (tail, head) in drawn:
                        continue
                    drawn.add((tail, head))
                    label = _attr_list({"label": _shape_text(parent.shape), "fontsize": "9", "fontcolor": MUTED})
                    graph.body.append(f"\t{tail} -> {head} [{label}]\n")
                else:
                    graph.body.append(f"\t{tail} -> {head}\n")
            graph.body.extend(self.order_edges(tensor, representative))

    def order_edges(self, tensor, representative):
        """Invisible edges from the values flowing into `tensor`'s op to the parameters it also takes, so that a
        layer's parameters, and with them its cluster, sit below the layer before instead of beside it."""
        parents = tensor.grad_fn.parents
        flowing = [representative[id(p)] for p in parents if p.grad_fn is not None]
        parameters = [representative[id(p)] for p in parents if id(p) in self.modules.parameters]
        return [
            f"\t{tail} -> {head} [style=invis]\n"
            for tail in dict.fromkeys(flowing) for head in dict.fromkeys(parameters)
            if head.startswith("t") and tail != head and head != representative[id(tensor)]
        ]

