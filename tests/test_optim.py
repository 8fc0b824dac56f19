"""optim: SGD and Adam against their updates written out by hand in numpy (float64), step by step."""

import numpy as np
import pytest

from tinygrad_sm import Tensor, nn, optim

STEPS = 5


def gradients(shape, seed=0):
    """The gradient each step will see, fixed in advance so the reference and the optimiser get the same ones."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(STEPS)]


def run(optimizer_class, start, grads, **options):
    param = Tensor(start.copy(), requires_grad=True)
    optimizer = optimizer_class([param], **options)
    trajectory = []
    for grad in grads:
        param.grad = Tensor(grad)
        optimizer.step()
        trajectory.append(param.data.copy())
    return trajectory


def sgd_by_hand(start, grads, lr, momentum=0.0, weight_decay=0.0):
    """PyTorch's SGD with dampening 0: d = g + λp; b = d at the first step, then b = μb + d; p = p - lr·b."""
    p, buffer, trajectory = start.astype(np.float64), None, []
    for g in grads:
        d = g + weight_decay * p
        if momentum:
            buffer = d if buffer is None else momentum * buffer + d
            d = buffer
        p = p - lr * d
        trajectory.append(p)
    return trajectory


def adam_by_hand(start, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """Kingma & Ba with the L2 term added to the gradient (PyTorch's Adam, not AdamW)."""
    p, m, v, trajectory = start.astype(np.float64), 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        g = g + weight_decay * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g**2
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        p = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        trajectory.append(p)
    return trajectory


def assert_trajectories_close(got, expected):
    for step, (a, b) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6, err_msg=f"step {step + 1}")


START = np.random.default_rng(42).standard_normal((3, 4)).astype(np.float32)


@pytest.mark.parametrize(
    "options",
    [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.1, weight_decay=0.01),
     dict(lr=0.02, momentum=0.5, weight_decay=0.1)],
)
def test_sgd_matches_the_update_by_hand(options):
    grads = gradients(START.shape)
    assert_trajectories_close(run(optim.SGD, START, grads, **options), sgd_by_hand(START, grads, **options))


@pytest.mark.parametrize(
    "options",
    [dict(), dict(lr=0.01), dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6), dict(lr=0.01, weight_decay=0.1)],
)
def test_adam_matches_the_update_by_hand(options):
    grads = gradients(START.shape, seed=1)
    assert_trajectories_close(run(optim.Adam, START, grads, **options), adam_by_hand(START, grads, **options))


def test_sgd_momentum_starts_from_the_first_gradient_not_a_damped_one():
    param = Tensor(np.zeros(1, dtype=np.float32), requires_grad=True)
    optimizer = optim.SGD([param], lr=1.0, momentum=0.9)
    param.grad = Tensor(np.ones(1, dtype=np.float32))
    optimizer.step()
    assert param.data[0] == pytest.approx(-1.0)  # b = g, not (1 - μ) g
    optimizer.step()
    assert param.data[0] == pytest.approx(-1.0 - 1.9)  # b = 0.9 * 1 + 1


def test_adam_weight_decay_is_l2_in_the_gradient_not_decoupled():
    """With a zero loss gradient, Adam's first step is lr·sign(λp) (AdamW's would be lr·λ·p)."""
    start = np.array([2.0, -3.0], dtype=np.float32)
    param = Tensor(start.copy(), requires_grad=True)
    optimizer = optim.Adam([param], lr=0.1, weight_decay=0.01)
    param.grad = Tensor(np.zeros(2, dtype=np.float32))
    optimizer.step()
    np.testing.assert_allclose(param.data, start - 0.1 * np.sign(start), rtol=1e-5)


def test_a_parameter_without_gradient_is_left_alone_and_keeps_its_own_adam_step_count():
    first = Tensor(START.copy(), requires_grad=True)
    late = Tensor(START.copy(), requires_grad=True)
    optimizer = optim.Adam([first, late], lr=0.01)
    grads = gradients(START.shape, seed=2)
    first.grad = Tensor(grads[0])
    optimizer.step()
    np.testing.assert_array_equal(late.data, START)
    for grad in grads[:3]:
        first.grad, late.grad = Tensor(grad), Tensor(grad)
        optimizer.step()
    assert_trajectories_close([late.data], adam_by_hand(START, grads[:3], lr=0.01)[-1:])


def test_training_a_quadratic_with_autograd_gradients_follows_the_hand_update():
    """Gradients from backward() of Σ (p - target)², against the hand update with ∇ = 2 (p - target)."""
    target = np.random.default_rng(3).standard_normal(START.shape)
    param = Tensor(START.copy(), requires_grad=True)
    optimizer = optim.SGD([param], lr=0.1, momentum=0.9)
    expected, buffer = START.astype(np.float64), None
    for _ in range(STEPS):
        optimizer.zero_grad()
        ((param - Tensor(target.astype(np.float32))) ** 2).sum().backward()
        optimizer.step()
        grad = 2 * (expected - target)
        buffer = grad if buffer is None else 0.9 * buffer + grad
        expected = expected - 0.1 * buffer
    np.testing.assert_allclose(param.data, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
     lambda p: optim.Adam(p, lr=0.01, weight_decay=0.01)],
)
def test_steps_keep_float32_parameters_float32(make):
    model = nn.MLP([3, 4, 2], rng=0)
    optimizer = make(model.parameters())
    for _ in range(3):
        optimizer.zero_grad()
        model(Tensor(np.ones((2, 3), dtype=np.float32))).sum().backward()
        optimizer.step()
    assert all(param.dtype == np.float32 for param in model.parameters())
    assert all(state_array.dtype == np.float32 for state in optimizer.state.values() for state_array in state.values()
               if isinstance(state_array, np.ndarray))


def test_zero_grad_clears_the_gradients():
    model = nn.Linear(3, 2, rng=0)
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    model(Tensor(np.ones((1, 3), dtype=np.float32))).sum().backward()
    optimizer.zero_grad()
    assert all(param.grad is None for param in model.parameters())


def test_momentum_buffer_does_not_alias_the_gradient():
    param = Tensor(np.zeros(2, dtype=np.float32), requires_grad=True)
    optimizer = optim.SGD([param], lr=1.0, momentum=0.9)
    param.grad = Tensor(np.ones(2, dtype=np.float32))
    optimizer.step()
    param.grad.data[:] = 100.0
    np.testing.assert_array_equal(optimizer.state[id(param)]["momentum_buffer"], [1.0, 1.0])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: optim.SGD(p, lr=-0.1), "SGD: learning rate must be >= 0 and finite, got -0.1"),
        (lambda p: optim.Adam(p, lr=-1e-3), "Adam: learning rate must be >= 0 and finite, got -0.001"),
        (lambda p: optim.SGD(p, lr=float("nan")), "learning rate must be >= 0 and finite, got nan"),
        (lambda p: optim.SGD(p, lr=float("inf")), "learning rate must be >= 0 and finite, got inf"),
        (lambda p: optim.Adam(p, weight_decay=float("inf")), "Adam: weight_decay must be >= 0 and finite, got inf"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), r"SGD: momentum must lie in \[0, 1\), got -0.5"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=1.5), r"SGD: momentum must lie in \[0, 1\), got 1.5"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=1.0), r"SGD: momentum must lie in \[0, 1\), got 1.0"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=float("nan")), r"SGD: momentum must lie in \[0, 1\), got nan"),
        (lambda p: optim.Adam(p, betas=(0.9, 1.5)), r"Adam: betas\[1\] must lie in \[0, 1\), got 1.5"),
        (lambda p: optim.Adam(p, betas=(-0.1, 0.999)), r"Adam: betas\[0\] must lie in \[0, 1\), got -0.1"),
        (lambda p: optim.Adam(p, betas=(0.9,)), r"Adam: betas must be a pair"),
        (lambda p: optim.SGD(p, lr=0.1, weight_decay=-1), "SGD: weight_decay must be >= 0"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), r"Adam: betas\[0\] must lie in \[0, 1\), got 1.0"),
        (lambda p: optim.Adam(p, eps=-1), "Adam: eps must be >= 0"),
        (lambda p: optim.SGD(p + p, lr=0.1), "appears more than once"),
        (lambda p: optim.SGD([], lr=0.1), "empty list of parameters"),
    ],
)
def test_bad_arguments_raise_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make(nn.Linear(2, 2, rng=0).parameters())


def test_params_must_be_an_iterable_of_float_tensors():
    with pytest.raises(TypeError, match="iterable of Tensors, got a single Tensor"):
        optim.SGD(Tensor([1.0], requires_grad=True), lr=0.1)
    with pytest.raises(TypeError, match="parameter 0 must be a floating-point Tensor"):
        optim.Adam([np.zeros(2)])


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p, lr=0.1)])
def test_a_step_leaves_the_callers_array_and_recorded_graphs_alone(make):
    values = np.array([1.0, 2.0])
    w = Tensor(values, requires_grad=True)
    x = Tensor(np.array([3.0, 4.0]), requires_grad=True)
    loss = (w * x).sum()
    loss.backward(retain_graph=True)
    make([w]).step()
    np.testing.assert_array_equal(values, [1.0, 2.0])
    x.grad = None
    loss.backward()
    np.testing.assert_array_equal(x.grad.data, [1.0, 2.0])  # d loss / dx = the w the graph was recorded with
