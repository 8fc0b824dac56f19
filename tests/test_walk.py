"""Walking finished graphs: order, recorded gradients against hand-derived formulas, module paths."""

import numpy as np
from conftest import numerical_gradients

from tinygrad_sm import Tensor, nn
from tinygrad_sm import functional as F
from tinygrad_sm.walk import ModuleIndex, backward_order, backward_recording_grads, topo_order


def test_tensors_in_order_puts_inputs_first_and_visits_a_diamond_once():
    a = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    b = Tensor(np.array([3.0, 4.0]), requires_grad=True)
    out = ((a + b) * a * 2.0).sum()
    order = topo_order(out, requiring_grad=False)
    position = {id(t): i for i, t in enumerate(order)}
    assert len(order) == len(position) == 7  # a, b, a+b, (a+b)*a, the constant 2, the product, the sum
    for tensor in order:
        if tensor.grad_fn is not None:
            assert all(position[id(p)] < position[id(tensor)] for p in tensor.grad_fn.parents)
    assert order[-1] is out
    assert sum(1 for t in order if t.grad_fn is None and not t.requires_grad) == 1  # the constant


def test_backward_order_runs_each_node_before_the_nodes_of_its_inputs():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    out = (x.tanh() @ Tensor(np.ones((3, 1)))).sum()
    nodes = backward_order(out)
    assert [node.op_name for node in nodes] == ["Sum", "MatMul", "Tanh"]
    assert nodes[0] is out.grad_fn


def test_a_chain_deeper_than_the_recursion_limit_is_walked():
    x = Tensor(np.array(0.5), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    assert len(topo_order(y, requiring_grad=False)) == 1 + 2 * 5000
    assert len(backward_order(y)) == 5000


def test_recorded_gradients_match_the_hand_derived_ones_and_finite_differences():
    x_values = np.array([0.3, -1.2, 2.0])
    x = Tensor(x_values, requires_grad=True)
    h = x.tanh()
    loss = (h * h).sum()
    grads = backward_recording_grads(loss)
    tanh = np.tanh(x_values)
    np.testing.assert_allclose(grads[id(loss)], 1.0)
    np.testing.assert_allclose(grads[id(h)], 2 * tanh)  # d/dh Σ h² = 2h
    np.testing.assert_allclose(x.grad.data, 2 * tanh * (1 - tanh**2))  # the chain rule through tanh
    (numerical,) = numerical_gradients(lambda t: (t.tanh() * t.tanh()).sum(), [x_values], 1.0)
    np.testing.assert_allclose(x.grad.data, numerical, rtol=1e-6)
    assert set(grads) == {id(loss), id(h), id(loss.grad_fn.parents[0])}  # the op results; leaves get .grad


def test_module_index_names_modules_and_parameters_by_dotted_path():
    model = nn.MLP([3, 4, 2], rng=0)
    loss = F.softmax_cross_entropy(model(Tensor(np.ones((2, 3), dtype=np.float32))), np.array([0, 1]))
    index = ModuleIndex(topo_order(loss, requiring_grad=False))
    assert index.paths[id(model)] == "" and index.paths[id(model.layers[2])] == "layers.2"
    assert index.label(model) == "MLP" and index.label(model.layers[0]) == "layers.0: Linear"
    assert index.chains[id(model.layers[1])] == (model, model.layers[1])
    path, owner = index.parameters[id(model.layers[2].bias)]
    assert path == "layers.2.bias" and owner is model.layers[2]
    assert sorted(path for path, _ in index.parameters.values()) == sorted(p for p, _ in model.named_parameters())


class TwoTowers(nn.Module):
    """A model whose own forward also makes nodes, with a list of parameters and a sub-model."""

    def __init__(self):
        self.encoder = nn.Sequential(nn.Linear(3, 3, rng=0), nn.Tanh())
        self.scales = [Tensor(np.ones(3), requires_grad=True)]

    def forward(self, x):
        return self.encoder(x) * self.scales[0]


def test_a_sub_model_run_on_its_own_keeps_its_path_in_the_bigger_model():
    model = TwoTowers()
    x = Tensor(np.ones((2, 3)))
    out = (model(x) + model.encoder.layers[0](x)).sum()
    index = ModuleIndex(topo_order(out, requiring_grad=False))
    assert index.paths[id(model.encoder.layers[0])] == "encoder.layers.0"
    assert index.chains[id(model.encoder.layers[0])] == (model, model.encoder, model.encoder.layers[0])
    path, owner = index.parameters[id(model.scales[0])]
    assert path == "scales.0" and owner is model
