"""The mathematics of softmax and logistic regression, each derivation checked by two independent computations.

Notation: z = W x + b are the logits, a = softmax(z) the probabilities, y the one-hot (or soft) target,
J = (1/N) Σᵢ -yᵢ · log aᵢ the mean cross-entropy, A and Y the matrices whose rows are aᵢ and yᵢ.
"""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression as SklearnLogisticRegression

from tinygrad_sm import Tensor, autograd, nn
from tinygrad_sm import functional as F
from tinygrad_sm.data import load_binary_digits, load_digits
from tinygrad_sm.gradcheck import hessian, jacobian, numerical_jacobian


def softmax_reference(z):
    """a = exp(z - max z) / Σ exp(z - max z), in plain numpy: the independent reference."""
    exps = np.exp(z - z.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def sigmoid_reference(z):
    """σ(z) = (1 + tanh(z / 2)) / 2: stable for any z, and a different formula from the engine's."""
    return (1 + np.tanh(z / 2)) / 2


def one_hot(labels, n_classes):
    return np.eye(n_classes)[labels]


def classification_problem(seed, n_samples, n_features, n_classes):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    labels = np.arange(n_samples) % n_classes  # every class present
    X += 0.7 * rng.standard_normal((n_classes, n_features))[labels]  # overlapping clusters: a finite optimum
    return X, labels


def set_parameters(model, flat):
    """Write a flat vector (W row by row, then b) into the model's parameters."""
    n_weights = model.weight.size
    model.weight.data[...] = flat[:n_weights].reshape(model.weight.shape)
    model.bias.data[...] = flat[n_weights:]


def get_parameters(model):
    return np.concatenate([model.weight.data.ravel(), model.bias.data.ravel()])


def penalised_objective(model, loss_fn, lam, decay_bias):
    """flat θ -> (J(θ) + (λ/2)‖W‖² [+ (λ/2)‖b‖²], its gradient), both by our engine's forward and backward."""

    def loss_and_gradient(flat):
        set_parameters(model, flat)
        model.zero_grad()
        loss = loss_fn(model) + (lam / 2) * (model.weight * model.weight).sum()
        if decay_bias:
            loss = loss + (lam / 2) * (model.bias * model.bias).sum()
        loss.backward()
        return loss.item(), np.concatenate([model.weight.grad.data.ravel(), model.bias.grad.data.ravel()])

    return loss_and_gradient


def softmax_regression_hessian(X, A, lam=0.0, decay_bias=False):
    """∇²J over (W row by row, then b) = (1/N) Σᵢ (diag(aᵢ) - aᵢaᵢᵀ) ⊗ x̃ᵢx̃ᵢᵀ with x̃ = (x, 1), plus λ where decayed."""
    n, d = X.shape
    k = A.shape[1]
    augmented = np.hstack([X, np.ones((n, 1))])
    outer = (augmented[:, :, None] * augmented[:, None, :]).reshape(n, (d + 1) ** 2)
    blocks = (F.softmax_jacobian(A).reshape(n, k * k).T @ outer / n).reshape(k, k, d + 1, d + 1)
    blocks = blocks.transpose(0, 2, 1, 3)  # [class k, feature j, class l, feature m]
    full = np.block([
        [blocks[:, :d, :, :d].reshape(k * d, k * d), blocks[:, :d, :, d].reshape(k * d, k)],
        [blocks[:, d, :, :d].reshape(k, k * d), blocks[:, d, :, d]],
    ])
    return full + lam * np.diag(np.r_[np.ones(k * d), np.full(k, float(decay_bias))])


def logistic_regression_hessian(X, p, lam):
    """∇²J over (w, b) = (1/N) Σᵢ σᵢ(1 - σᵢ) x̃ᵢx̃ᵢᵀ + λ diag(1, ..., 1, 0): the bias is not decayed."""
    augmented = np.hstack([X, np.ones((len(X), 1))])
    return (augmented.T * (p * (1 - p))) @ augmented / len(X) + lam * np.diag(np.r_[np.ones(X.shape[1]), 0.0])


def newton_minimise(loss_and_gradient, hessian_at, start, tol=1e-10, max_iterations=100):
    """Damped Newton on a convex objective: step -H⁻¹∇J, halved until the loss decreases (Armijo).

    Once the loss no longer changes in float64 the gradient decides: it stops when max |∇J| < tol, else fails.
    """
    flat = start.copy()
    loss, gradient = loss_and_gradient(flat)
    for _ in range(max_iterations):
        if np.abs(gradient).max() < tol:
            return flat
        step = np.linalg.solve(hessian_at(flat), -gradient)
        size = 1.0
        while True:
            new_loss, new_gradient = loss_and_gradient(flat + size * step)
            decreased = new_loss <= loss + 1e-4 * size * (gradient @ step)
            if decreased or abs(new_loss - loss) <= 1e-14 * max(1.0, abs(loss)) or size < 1e-8:
                break
            size /= 2
        flat, loss, gradient = flat + size * step, new_loss, new_gradient
    raise AssertionError(f"Newton did not converge: max |gradient| = {np.abs(gradient).max():.3g}")


def train_softmax_regression(X, labels, lam, start, decay_bias=False):
    """Minimise J + (λ/2)‖W‖² (and (λ/2)‖b‖² with decay_bias) from `start` with our gradients.

    Undecayed, the objective is flat along u = (0, 1)/√K (every bias shifted alike) and ∇J·u = 0, so
    H + uuᵀ is invertible and gives the same Newton step, which never moves mean(b).
    """
    n_classes = labels.max() + 1
    model = nn.SoftmaxRegression(X.shape[1], n_classes, dtype=np.float64)
    inputs = Tensor(X)
    bias_shift = np.r_[np.zeros(model.weight.size), np.ones(n_classes)] / np.sqrt(n_classes)

    def hessian_at(flat):
        set_parameters(model, flat)
        matrix = softmax_regression_hessian(X, model.predict_proba(inputs).data, lam, decay_bias)
        return matrix if decay_bias else matrix + np.outer(bias_shift, bias_shift)

    objective = penalised_objective(model, lambda m: F.softmax_cross_entropy(m(inputs), labels), lam, decay_bias)
    set_parameters(model, newton_minimise(objective, hessian_at, start))
    return model


# ---- 1. the softmax Jacobian ----

@pytest.mark.parametrize("n_classes", [2, 3, 7, 20, 50])
@pytest.mark.parametrize("nearly_one_hot", [False, True])
def test_softmax_jacobian_three_ways(n_classes, nearly_one_hot):
    """∂aᵢ/∂zⱼ = aᵢ(δᵢⱼ - aⱼ), i.e. J = diag(a) - a aᵀ: hand formula = autograd = central differences (1e-8)."""
    z = np.random.default_rng(n_classes).standard_normal(n_classes)
    if nearly_one_hot:
        z[0] += 30.0  # a ≈ (1 - 1e-13 (K-1), 1e-13, ...)
    a = F.softmax(Tensor(z)).data
    if nearly_one_hot:
        assert a[0] > 1 - 1e-11
    formula = F.softmax_jacobian(a)
    by_autograd = jacobian(F.softmax, z)
    by_differences = numerical_jacobian(F.softmax, z)
    np.testing.assert_allclose(by_autograd, formula, rtol=0, atol=1e-8)
    np.testing.assert_allclose(by_differences, formula, rtol=0, atol=1e-8)
    np.testing.assert_allclose(formula, np.diag(a) - np.outer(a, a), rtol=0, atol=1e-15)


@pytest.mark.parametrize("n_classes", [2, 5, 50])
def test_softmax_jacobian_structure(n_classes):
    """Σⱼ Jᵢⱼ = aᵢ - aᵢ Σⱼ aⱼ = 0; J = Jᵀ; vᵀJv = Σ aᵢvᵢ² - (a·v)² = Var_a(v) ≥ 0, zero for v = 1."""
    a = softmax_reference(np.random.default_rng(n_classes).standard_normal(n_classes) * 3)
    matrix = jacobian(F.softmax, np.log(a))  # the autograd Jacobian, at logits whose softmax is a
    ones = np.ones(n_classes)
    np.testing.assert_allclose(matrix.sum(axis=1), 0, atol=1e-15)
    np.testing.assert_allclose(matrix, matrix.T, rtol=0, atol=1e-15)
    np.testing.assert_allclose(matrix @ ones, 0, atol=1e-15)
    eigenvalues = np.linalg.eigvalsh(matrix)
    assert eigenvalues.min() > -1e-15
    assert np.sum(np.abs(eigenvalues) < 1e-12) == 1  # the null space is exactly span{1}: all aᵢ > 0
    v = np.random.default_rng(1).standard_normal(n_classes)
    assert v @ matrix @ v == pytest.approx(a @ v**2 - (a @ v) ** 2, rel=1e-10)


# ---- 2. the fused backward ----

@pytest.mark.parametrize("target_kind", ["labels", "soft"])
def test_fused_backward_is_a_minus_y_over_n(target_kind):
    """∂J/∂z = (A - Y) / N: fused node = hand formula = central differences = the unfused composition."""
    rng = np.random.default_rng(2)
    n, k = 6, 5
    z = rng.standard_normal((n, k)) * 2
    labels = rng.integers(0, k, n)
    if target_kind == "labels":
        target, Y = labels, one_hot(labels, k)
    else:
        Y = softmax_reference(rng.standard_normal((n, k)))
        target = Y

    logits = Tensor(z, requires_grad=True)
    loss = F.softmax_cross_entropy(logits, target)
    assert loss.grad_fn.op_name == "SoftmaxCrossEntropy"
    loss.backward()
    fused = logits.grad.data

    by_hand = (softmax_reference(z) - Y) / n
    by_differences = numerical_jacobian(lambda t: F.softmax_cross_entropy(t, target), z).reshape(n, k)

    def unfused(t):
        log_probs = F.log_softmax(t, axis=1)
        picked = log_probs[np.arange(n), labels] if target_kind == "labels" else (log_probs * Tensor(Y)).sum(axis=1)
        return -picked.mean()

    unfused_loss = unfused(Tensor(z))
    assert unfused_loss.item() == pytest.approx(loss.item(), rel=1e-12)
    by_composition = jacobian(unfused, z).reshape(n, k)

    np.testing.assert_allclose(fused, by_hand, rtol=0, atol=1e-15)
    np.testing.assert_allclose(by_differences, by_hand, rtol=0, atol=1e-9)
    np.testing.assert_allclose(by_composition, by_hand, rtol=0, atol=1e-15)


# ---- 3. softmax regression's gradients ----

def test_softmax_regression_gradients():
    """With Z = X Wᵀ + 1bᵀ and A = softmax(Z): ∂J/∂W = (A - Y)ᵀ X / N and ∂J/∂b = mean over the batch of (A - Y)."""
    X, labels = classification_problem(seed=3, n_samples=12, n_features=5, n_classes=4)
    model = nn.SoftmaxRegression(5, 4, rng=3, dtype=np.float64)
    loss = F.softmax_cross_entropy(model(Tensor(X)), labels)
    loss.backward()

    residual = softmax_reference(X @ model.weight.data.T + model.bias.data) - one_hot(labels, 4)
    np.testing.assert_allclose(model.weight.grad.data, residual.T @ X / len(X), rtol=0, atol=1e-15)
    np.testing.assert_allclose(model.bias.grad.data, residual.mean(axis=0), rtol=0, atol=1e-15)

    def loss_of(flat):
        weight, bias = flat[:20].reshape(4, 5), flat[20:]
        return F.softmax_cross_entropy(Tensor(X) @ weight.T + bias, labels)

    by_differences = numerical_jacobian(loss_of, get_parameters(model))[0]
    np.testing.assert_allclose(by_differences[:20], (residual.T @ X / len(X)).ravel(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(by_differences[20:], residual.mean(axis=0), rtol=0, atol=1e-9)


# ---- 4. two classes: softmax regression is logistic regression ----

def test_two_class_softmax_is_logistic_regression():
    """softmax(z₁, z₂)₂ = 1 / (1 + e^(z₁ - z₂)) = σ((w₂ - w₁)·x + (b₂ - b₁)): same probabilities, same loss,
    and ∂J/∂w₂ = -∂J/∂w₁ = ∂J_logistic/∂w."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((15, 3)) * 2
    labels = rng.integers(0, 2, 15)
    softmax_model = nn.SoftmaxRegression(3, 2, rng=4, dtype=np.float64)
    logistic_model = nn.LogisticRegression(3, dtype=np.float64)
    W, b = softmax_model.weight.data, softmax_model.bias.data
    logistic_model.weight.data[...] = (W[1] - W[0])[None, :]
    logistic_model.bias.data[...] = b[1] - b[0]
    inputs = Tensor(X)

    softmax_probabilities = softmax_model.predict_proba(inputs).data
    logistic_probabilities = logistic_model.predict_proba(inputs).data
    np.testing.assert_allclose(softmax_probabilities[:, 1], logistic_probabilities, rtol=0, atol=1e-12)
    np.testing.assert_allclose(softmax_probabilities[:, 0], 1 - logistic_probabilities, rtol=0, atol=1e-12)

    softmax_loss = F.softmax_cross_entropy(softmax_model(inputs), labels)
    logistic_loss = F.binary_cross_entropy_with_logits(logistic_model(inputs), labels.astype(np.float64))
    assert softmax_loss.item() == pytest.approx(logistic_loss.item(), rel=1e-12)

    softmax_loss.backward()
    logistic_loss.backward()
    np.testing.assert_allclose(softmax_model.weight.grad.data[1], logistic_model.weight.grad.data[0], atol=1e-14)
    np.testing.assert_allclose(softmax_model.weight.grad.data[0], -logistic_model.weight.grad.data[0], atol=1e-14)
    np.testing.assert_allclose(softmax_model.bias.grad.data[1], logistic_model.bias.grad.data[0], atol=1e-14)


# ---- 5. parameter redundancy ----

def test_shifting_every_class_leaves_probabilities_unchanged():
    """softmax(z - c1) = softmax(z), and W x + b - (θ·x + c) 1 shifts every logit by the same amount."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((20, 4))
    model = nn.SoftmaxRegression(4, 3, rng=5, dtype=np.float64)
    logits_before, before = model(Tensor(X)).data, model.predict_proba(Tensor(X)).data
    theta, shift = rng.standard_normal(4) * 10, rng.standard_normal() * 10
    model.weight.data -= theta
    model.bias.data -= shift
    logits_after, after = model(Tensor(X)).data, model.predict_proba(Tensor(X)).data
    np.testing.assert_allclose(logits_before - logits_after, np.repeat((X @ theta + shift)[:, None], 3, axis=1))
    assert np.abs(logits_before - logits_after).max() > 1  # the logits really moved ...
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)  # ... and the probabilities did not


def test_unregularised_hessian_null_space_is_the_shifts():
    """H = (1/N) Σᵢ (diag(aᵢ) - aᵢaᵢᵀ) ⊗ x̃ᵢx̃ᵢᵀ has rank (K - 1)(d + 1): exactly d + 1 zero eigenvalues, whose
    eigenvectors span the shifts (W, b) -> (W - 1θᵀ, b - c1)."""
    n_features, n_classes = 3, 4
    X, labels = classification_problem(seed=6, n_samples=30, n_features=n_features, n_classes=n_classes)
    n_weights = n_classes * n_features

    def loss_of(flat):
        weight = flat[:n_weights].reshape(n_classes, n_features)
        return F.softmax_cross_entropy(Tensor(X) @ weight.T + flat[n_weights:], labels)

    start = np.random.default_rng(6).standard_normal(n_weights + n_classes)
    matrix = hessian(loss_of, start)
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    is_zero = np.abs(eigenvalues) < 1e-8
    assert is_zero.sum() == n_features + 1
    assert eigenvalues[~is_zero].min() > 1e-4  # the others are clearly not zero

    shifts = np.zeros((n_weights + n_classes, n_features + 1))
    for j in range(n_features):
        shifts[:n_weights, j] = np.tile(np.eye(n_features)[j], n_classes)  # θ = eⱼ subtracted from every class
    shifts[n_weights:, n_features] = 1  # c subtracted from every bias
    np.testing.assert_allclose(matrix @ shifts, 0, atol=1e-8)
    null_projector = eigenvectors[:, is_zero] @ eigenvectors[:, is_zero].T
    shift_basis = np.linalg.qr(shifts)[0]
    np.testing.assert_allclose(null_projector, shift_basis @ shift_basis.T, rtol=0, atol=1e-6)

    a = softmax_reference(X @ start[:n_weights].reshape(n_classes, n_features).T + start[n_weights:])
    np.testing.assert_allclose(matrix, softmax_regression_hessian(X, a), rtol=0, atol=1e-7)


# ---- 6. weight decay ----

def test_weight_decay_hessian_is_the_kronecker_formula_plus_lambda():
    """∇²_W [J + (λ/2)‖W‖²] = (1/N) Σᵢ (diag(aᵢ) - aᵢaᵢᵀ) ⊗ xᵢxᵢᵀ + λI, whose smallest eigenvalue is ≥ λ."""
    n_features, n_classes, lam = 4, 3, 0.05
    X, labels = classification_problem(seed=7, n_samples=20, n_features=n_features, n_classes=n_classes)
    rng = np.random.default_rng(7)
    bias = rng.standard_normal(n_classes)
    weight = rng.standard_normal((n_classes, n_features))

    def loss_of(flat):
        W = flat.reshape(n_classes, n_features)
        return F.softmax_cross_entropy(Tensor(X) @ W.T + bias, labels) + (lam / 2) * (W * W).sum()

    by_autograd = hessian(loss_of, weight.ravel())
    a = softmax_reference(X @ weight.T + bias)
    by_hand = sum(np.kron(np.diag(ai) - np.outer(ai, ai), np.outer(xi, xi)) for ai, xi in zip(a, X)) / len(X)
    by_hand += lam * np.eye(n_classes * n_features)
    np.testing.assert_allclose(by_autograd, by_hand, rtol=0, atol=1e-6)
    assert np.linalg.eigvalsh(by_autograd).min() >= lam - 1e-8


def test_weight_decay_makes_the_weights_unique():
    """J + (λ/2)‖W‖² is strictly convex in W (Hessian ≥ λI), so two starts reach the same W and the same
    probabilities. The undecayed bias is unique only up to a common shift: ∂J/∂b sums to 0 over the classes,
    so gradient steps never change mean(b) and each run keeps the mean of its start. Decaying b too
    makes the whole optimum unique."""
    n_features, n_classes, lam = 4, 3, 0.1
    X, labels = classification_problem(seed=8, n_samples=40, n_features=n_features, n_classes=n_classes)
    n_parameters = n_classes * (n_features + 1)
    starts = [np.random.default_rng(seed).standard_normal(n_parameters) * 2 for seed in (80, 81)]

    first, second = (train_softmax_regression(X, labels, lam, start) for start in starts)
    np.testing.assert_allclose(first.weight.data, second.weight.data, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        first.predict_proba(Tensor(X)).data, second.predict_proba(Tensor(X)).data, rtol=0, atol=1e-6
    )
    bias_gap = first.bias.data - second.bias.data
    np.testing.assert_allclose(bias_gap, bias_gap.mean(), atol=1e-6)  # a common shift ...
    start_gap = starts[0][-n_classes:].mean() - starts[1][-n_classes:].mean()
    assert bias_gap.mean() == pytest.approx(start_gap, abs=1e-9)  # ... the one the starts had
    assert abs(start_gap) > 0.1

    first, second = (train_softmax_regression(X, labels, lam, start, decay_bias=True) for start in starts)
    np.testing.assert_allclose(get_parameters(first), get_parameters(second), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def digits():
    X_train, _, y_train, _ = load_digits()
    return X_train.astype(np.float64), y_train


def test_digits_optimum_matches_scikit_learn(digits):
    """sklearn minimises C Σᵢ CEᵢ + ½‖W‖² (intercept unpenalised) = CN [J + (λ/2)‖W‖²] for C = 1/(λN)."""
    X, labels = digits
    lam = 1e-3
    model = train_softmax_regression(X, labels, lam, start=np.zeros(10 * (X.shape[1] + 1)))
    reference = SklearnLogisticRegression(C=1 / (lam * len(X)), solver="lbfgs", tol=1e-10, max_iter=10_000)
    reference.fit(X, labels)
    assert np.abs(reference.coef_).max() > 0.5  # far from the zero start
    np.testing.assert_allclose(model.weight.data, reference.coef_, rtol=0, atol=1e-4)
    centred_bias = model.bias.data - model.bias.data.mean()  # the undecayed bias: unique up to a common shift
    np.testing.assert_allclose(centred_bias, reference.intercept_ - reference.intercept_.mean(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.predict_proba(Tensor(X)).data, reference.predict_proba(X), rtol=0, atol=1e-5)


def test_logistic_regression_hessian_by_hand():
    """∇²[J + (λ/2)‖w‖²] over (w, b) = (1/N) Σᵢ σᵢ(1 - σᵢ) x̃ᵢx̃ᵢᵀ + λ diag(1, ..., 1, 0), against autograd."""
    rng = np.random.default_rng(9)
    X, y, lam = rng.standard_normal((25, 3)), rng.integers(0, 2, 25).astype(np.float64), 0.05
    model = nn.LogisticRegression(3, dtype=np.float64)

    def loss_of(flat):
        w, b = flat[:3].reshape(1, 3), flat[3:]
        return F.binary_cross_entropy_with_logits((Tensor(X) @ w.T + b).reshape(-1), y) + (lam / 2) * (w * w).sum()

    flat = get_parameters(model)
    p = sigmoid_reference(X @ flat[:3] + flat[3])
    np.testing.assert_allclose(hessian(loss_of, flat), logistic_regression_hessian(X, p, lam), rtol=0, atol=1e-7)


def test_binary_digits_optimum_matches_scikit_learn():
    """The binary case (4 against 9): our LogisticRegression, trained with our gradients, against sklearn's."""
    X_train, _, y_train, _ = load_binary_digits()
    X, y, lam = X_train.astype(np.float64), y_train.astype(np.float64), 1e-3
    model = nn.LogisticRegression(X.shape[1], dtype=np.float64)
    inputs = Tensor(X)

    def hessian_at(flat):
        set_parameters(model, flat)
        return logistic_regression_hessian(X, model.predict_proba(inputs).data, lam)

    objective = penalised_objective(
        model, lambda m: F.binary_cross_entropy_with_logits(m(inputs), y), lam, decay_bias=False
    )
    set_parameters(model, newton_minimise(objective, hessian_at, np.zeros(X.shape[1] + 1)))

    reference = SklearnLogisticRegression(C=1 / (lam * len(X)), solver="lbfgs", tol=1e-10, max_iter=10_000)
    reference.fit(X, y)
    assert np.abs(reference.coef_).max() > 0.5
    np.testing.assert_allclose(model.weight.data, reference.coef_, rtol=0, atol=1e-4)
    np.testing.assert_allclose(model.bias.data, reference.intercept_, rtol=0, atol=1e-4)


# ---- 7. the exact Hessian by autograd, on the digits ----
#
# Softmax regression without a bias (sklearn's fit_intercept=False): logits X Wᵀ with W of shape (K, d), as
# nn.SoftmaxRegression and sklearn's coef_, flattened row by row (class by class), so that index (c, j) of the
# Kronecker product (diag(a) - aaᵀ) ⊗ xxᵀ is weight W[c, j]. Every Hessian here is autograd's, no differences.

@pytest.fixture(scope="module")
def digit_sample():
    """The first 200 training digits: 64 pixels in [0, 1] as float64, labels 0-9 (every class present)."""
    X_train, _, y_train, _ = load_digits()
    return X_train[:200].astype(np.float64), y_train[:200]


def penalised_cross_entropy(X, labels, lam):
    """W (K, d) -> J(W) + (λ/2)‖W‖² with J the mean cross-entropy of softmax(X Wᵀ)."""

    def loss_of(weight):
        return F.softmax_cross_entropy(Tensor(X) @ weight.T, labels) + (lam / 2) * (weight * weight).sum()

    return loss_of


def kronecker_hessian(X, A):
    """(1/N) Σᵢ (diag(aᵢ) - aᵢaᵢᵀ) ⊗ xᵢxᵢᵀ, as a (Kd, Kd) matrix: entry [(c, j), (l, m)] = mean Sᵢ[c, l] xᵢⱼ xᵢₘ."""
    n, d = X.shape
    k = A.shape[1]
    softmax_jacobians = np.eye(k) * A[:, :, None] - A[:, :, None] * A[:, None, :]
    return np.einsum("icl,ij,im->cjlm", softmax_jacobians, X, X, optimize=True).reshape(k * d, k * d) / n


def autograd_hessian(X, labels, lam, weight):
    """autograd.hessian of the penalised loss at W: shape (K, d, K, d), returned as (Kd, Kd)."""
    return autograd.hessian(penalised_cross_entropy(X, labels, lam), Tensor(weight)).data.reshape(weight.size, -1)


@pytest.mark.parametrize("lam", [0.0, 1e-2])
def test_digits_hessian_is_the_kronecker_formula(digit_sample, lam):
    """∇²_W [J + (λ/2)‖W‖²] = (1/N) Σᵢ (diag(aᵢ) - aᵢaᵢᵀ) ⊗ xᵢxᵢᵀ + λI exactly (1e-10), 640 x 640."""
    X, labels = digit_sample
    weight = np.random.default_rng(10).standard_normal((10, X.shape[1]))
    A = softmax_reference(X @ weight.T)
    assert A.max(axis=1).min() < 0.99  # no row is near one-hot: the curvature is far from zero
    by_autograd = autograd.hessian(penalised_cross_entropy(X, labels, lam), Tensor(weight)).data
    assert by_autograd.shape == (10, X.shape[1], 10, X.shape[1])  # the input's shape twice, as torch's
    by_autograd = by_autograd.reshape(weight.size, weight.size)
    by_hand = kronecker_hessian(X, A) + lam * np.eye(weight.size)
    assert np.abs(by_hand).max() > 1e-2
    np.testing.assert_allclose(by_autograd, by_hand, rtol=0, atol=1e-10)


@pytest.mark.parametrize("bias", [False, True])
def test_digits_hessian_null_space_is_the_shifts(digit_sample, bias):
    """Unregularised, W -> W - 1vᵀ (every class minus the same v) leaves every softmax unchanged, so H has d = 64
    zero eigenvalues along these shifts, d + 1 with a bias (a column of ones in X). A pixel that is 0 in every
    image of the sample gives its weights no curvature at all: each of the z such pixels makes all K of its weights
    null, K - 1 beyond its shift. So the nullity is d (+ 1) + (K - 1) z, and the null space is spanned by the shifts
    and those pixels' single weights."""
    X, labels = digit_sample
    if bias:
        X = np.hstack([X, np.ones((len(X), 1))])
    n_classes, n_features = 10, X.shape[1]
    blank = np.flatnonzero(np.abs(X).max(axis=0) == 0)
    assert len(blank) > 0  # the digits' border pixels: the case this test must count
    weight = np.random.default_rng(11).standard_normal((n_classes, n_features)) / 10  # a ∈ (0.03, 0.4)
    matrix = autograd_hessian(X, labels, 0.0, weight)

    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    relative = np.abs(eigenvalues) / eigenvalues.max()
    is_zero = relative < 1e-12
    assert is_zero.sum() == n_features + (n_classes - 1) * len(blank)
    assert relative[~is_zero].min() > 1e-9  # a clear gap: the others are not rounding errors

    null_directions = []
    for j in range(n_features):
        pixel_weights = np.zeros((n_classes, n_features))
        if j in blank:
            for c in range(n_classes):  # each blank pixel's K weights, one by one (its shift among them)
                single = pixel_weights.copy()
                single[c, j] = 1
                null_directions.append(single.ravel())
        else:
            pixel_weights[:, j] = 1 / np.sqrt(n_classes)  # v = eⱼ, subtracted from every class
            null_directions.append(pixel_weights.ravel())
    basis = np.array(null_directions).T  # orthonormal: disjoint supports
    np.testing.assert_allclose(matrix @ basis, 0, rtol=0, atol=1e-12)
    null_projector = eigenvectors[:, is_zero] @ eigenvectors[:, is_zero].T
    np.testing.assert_allclose(null_projector, basis @ basis.T, rtol=0, atol=1e-8)


def test_digits_weight_decay_lifts_the_spectrum_to_lambda(digit_sample):
    """H + λI has eigenvalues λ + (those of H ≥ 0): the smallest is λ, reached along the shifts."""
    X, labels = digit_sample
    lam = 1e-2
    weight = np.random.default_rng(12).standard_normal((10, X.shape[1]))
    eigenvalues = np.linalg.eigvalsh(autograd_hessian(X, labels, lam, weight))
    assert eigenvalues.min() >= lam - 1e-12
    assert eigenvalues.min() == pytest.approx(lam, abs=1e-12)  # the shifts have no other curvature


@pytest.mark.parametrize("shape", [(7,), (4, 6)])
def test_autograd_jacobian_of_softmax(shape):
    """autograd.jacobian of softmax over the last axis: diag(a) - aaᵀ (1e-12) for a vector; for a batch of
    shape (N, K) the Jacobian has shape (N, K, N, K) and is zero between different rows."""
    z = np.random.default_rng(13).standard_normal(shape) * 2
    by_autograd = autograd.jacobian(F.softmax, Tensor(z)).data
    assert by_autograd.shape == shape + shape
    a = softmax_reference(z).reshape(-1, shape[-1])
    expected = np.zeros((len(a), shape[-1], len(a), shape[-1]))
    for i, ai in enumerate(a):
        expected[i, :, i, :] = np.diag(ai) - np.outer(ai, ai)
    np.testing.assert_allclose(by_autograd, expected.reshape(shape + shape), rtol=0, atol=1e-12)


def test_newton_on_digits_is_quadratic_and_reaches_scikit_learn(digit_sample):
    """Newton's method W <- W - H⁻¹∇ with autograd's gradient and Hessian, on J + (λ/2)‖W‖² (no bias, so all of W
    is decayed and H ≥ λI is invertible): from W = 0 the gradient norm falls below 1e-10 in at most 15 steps,
    squaring near the end (g_{t+1} ≤ 10 g_t²), and W is sklearn's optimum (C = 1/(λN), no intercept) to 1e-6."""
    X, labels = digit_sample
    lam = 1e-2
    loss_of = penalised_cross_entropy(X, labels, lam)

    def gradient_at(weight):
        leaf = Tensor(weight, requires_grad=True)
        return autograd.grad(loss_of(leaf), [leaf])[0].data

    weight = np.zeros((10, X.shape[1]))
    gradient_norms = [np.linalg.norm(gradient_at(weight))]
    while gradient_norms[-1] >= 1e-10 and len(gradient_norms) <= 15:
        step = np.linalg.solve(autograd_hessian(X, labels, lam, weight), gradient_at(weight).ravel())
        weight = weight - step.reshape(weight.shape)
        gradient_norms.append(np.linalg.norm(gradient_at(weight)))
    assert gradient_norms[-1] < 1e-10, gradient_norms  # within the 15 steps the loop allows
    last = np.array(gradient_norms[-4:])
    assert np.all(last[1:] <= 10 * last[:-1] ** 2)  # quadratic: linear convergence would fail this at g ~ 1e-6

    reference = SklearnLogisticRegression(C=1 / (lam * len(X)), fit_intercept=False, solver="lbfgs",
                                          tol=1e-12, max_iter=10_000).fit(X, labels)
    assert np.abs(reference.coef_).max() > 0.5  # far from the zero start
    np.testing.assert_allclose(weight, reference.coef_, rtol=0, atol=1e-6)
    assert np.linalg.norm(gradient_at(reference.coef_.copy())) > gradient_norms[-1]  # lbfgs stops earlier
