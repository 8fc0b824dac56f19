"""nn: parameter discovery, PyTorch's Linear init, the classifiers, state dicts and saving to .npz."""

import os
import zipfile

import numpy as np
import pytest

from tinygrad_sm import Tensor, nn
from tinygrad_sm import functional as F
from tinygrad_sm.grad_mode import settings


class Block(nn.Module):
    def __init__(self, rng):
        self.scale = Tensor(np.ones(3, dtype=np.float32), requires_grad=True)
        self.constant = Tensor(np.zeros(3, dtype=np.float32))
        self.heads = [nn.Linear(3, 2, rng=rng), nn.Linear(3, 1, bias=False, rng=rng)]
        self.body = nn.Sequential(nn.Linear(3, 3, rng=rng), nn.Tanh())

    def forward(self, x):
        return self.body(x * self.scale)


def two_layer(seed=0):
    return nn.MLP([4, 5, 3], rng=np.random.default_rng(seed))


def test_named_parameters_walk_attributes_lists_and_sequential_in_order():
    names = [name for name, _ in Block(np.random.default_rng(0)).named_parameters()]
    assert names == ["scale", "heads.0.weight", "heads.0.bias", "heads.1.weight", "body.layers.0.weight",
                     "body.layers.0.bias"]
    assert [name for name, _ in two_layer().named_parameters()] == [
        "layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]


def test_a_shared_parameter_is_listed_once():
    layer = nn.Linear(2, 2, rng=0)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert [name for name, _ in model.named_parameters()] == ["layers.0.weight", "layers.0.bias"]
    assert len(model.parameters()) == 2


def test_zero_grad_clears_every_gradient():
    model = two_layer()
    model(Tensor(np.ones((2, 4), dtype=np.float32))).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_train_and_eval_reach_every_submodule():
    model = Block(np.random.default_rng(0))
    assert model.eval() is model
    assert [m.training for _, m in model.named_modules()] == [False] * 6
    model.train()
    assert all(m.training for _, m in model.named_modules())


def test_call_runs_forward_inside_the_module_stack_and_pops_it_after_an_error():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(list(settings.module_stack))
            raise RuntimeError("boom")

    probe = Probe()
    outer = nn.Sequential(probe)
    with pytest.raises(RuntimeError, match="boom"):
        outer(Tensor([1.0]))
    assert seen == [[outer, probe]]
    assert settings.module_stack == []


def test_linear_forward_is_x_w_transpose_plus_b():
    layer = nn.Linear(4, 3, rng=1)
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(Tensor(x)).data, x @ layer.weight.data.T + layer.bias.data, rtol=1e-6)
    no_bias = nn.Linear(4, 3, bias=False, rng=1)
    assert no_bias.bias is None and len(no_bias.parameters()) == 1
    np.testing.assert_allclose(no_bias(Tensor(x)).data, x @ no_bias.weight.data.T, rtol=1e-6)


@pytest.mark.parametrize("in_features", [1, 16, 300])
def test_linear_init_is_uniform_within_pytorch_bounds(in_features):
    """PyTorch: kaiming_uniform(a=sqrt(5)) for the weight and U(±1/sqrt(fan_in)) for the bias: both U(±1/sqrt(in))."""
    bound = 1 / np.sqrt(in_features)
    layer = nn.Linear(in_features, 2000, rng=np.random.default_rng(0))
    for values in (layer.weight.data, layer.bias.data):
        assert values.dtype == np.float32
        assert np.abs(values).max() <= np.float32(bound)
        assert np.abs(values).max() > 0.99 * bound  # the range is filled, not a narrower one
        assert abs(values.mean()) < 0.05 * bound
        assert values.var() == pytest.approx(bound**2 / 3, rel=0.1)  # the variance of U(-b, b) is b²/3


def test_linear_init_is_seedable():
    first, again, other = (nn.Linear(8, 4, rng=seed) for seed in (7, 7, 8))
    np.testing.assert_array_equal(first.weight.data, again.weight.data)
    np.testing.assert_array_equal(first.bias.data, again.bias.data)
    assert not np.array_equal(first.weight.data, other.weight.data)
    nn.manual_seed(3)
    a = nn.Linear(8, 4)
    nn.manual_seed(3)
    b = nn.Linear(8, 4)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)


@pytest.mark.parametrize("sizes", [(0, 3), (3, -1), (2.5, 3), (True, 3)])
def test_linear_rejects_bad_sizes(sizes):
    with pytest.raises(ValueError, match="Linear: (in|out)_features must be a positive integer"):
        nn.Linear(*sizes)


def test_mlp_layers_and_bad_arguments():
    model = nn.MLP([4, 8, 8, 2], activation="tanh", rng=0)
    assert [type(layer).__name__ for layer in model.layers] == ["Linear", "Tanh", "Linear", "Tanh", "Linear"]
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.MLP([4, 2], activation="gelu")
    with pytest.raises(ValueError, match="at least an input and an output"):
        nn.MLP([4])


def test_softmax_and_logistic_regression_shapes_and_probabilities():
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    softmax = nn.SoftmaxRegression(5, 3, rng=0)
    assert softmax.weight.shape == (3, 5) and softmax.bias.shape == (3,)
    z = x @ softmax.weight.data.T + softmax.bias.data
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax.predict_proba(Tensor(x)).data, expected, rtol=1e-5)
    logistic = nn.LogisticRegression(5, rng=0)
    assert logistic.weight.shape == (1, 5) and logistic.bias.shape == (1,)
    logits = logistic(Tensor(x))
    assert logits.shape == (6,)
    expected = 1 / (1 + np.exp(-(x @ logistic.weight.data[0] + logistic.bias.data[0])))
    np.testing.assert_allclose(logistic.predict_proba(Tensor(x)).data, expected, rtol=1e-5)


def test_state_dict_holds_copies_in_parameter_order():
    model = two_layer()
    state = model.state_dict()
    assert list(state) == [name for name, _ in model.named_parameters()]
    state["layers.0.bias"][:] = 99
    assert not np.any(model.layers[0].bias.data == 99)


def test_load_state_dict_round_trip_casts_to_the_parameter_dtype():
    source, target = two_layer(0), two_layer(1)
    state = {name: array.astype(np.float64) for name, array in source.state_dict().items()}
    with pytest.warns(UserWarning, match=r"cast 'layers.0.weight' from float64 to float32, 'layers.0.bias' from"):
        assert target.load_state_dict(state) is target
    for (_, a), (_, b) in zip(source.named_parameters(), target.named_parameters()):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a.data, b.data)
    state["layers.0.weight"][:] = 5  # the model holds its own copy
    assert not np.any(target.layers[0].weight.data == 5)


def assert_unchanged(model, before):
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, before[name])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("layers.2.bias"), r"missing key 'layers.2.bias' \(shape \(3,\)\)"),
        (lambda s: s.update(extra=np.zeros(2)), r"unexpected key 'extra' \(shape \(2,\)\)"),
        (lambda s: s.update({"layers.0.weight": np.zeros((5, 3))}),
         r"shape mismatch for 'layers.0.weight': the model has \(5, 4\), got \(5, 3\)"),
        (lambda s: s.update({"layers.0.bias": np.array(["a"] * 5)}), r"'layers.0.bias' holds dtype <U1"),
        (lambda s: s["layers.2.weight"].__setitem__((0, 1), np.nan),
         r"'layers.2.weight' holds 1 NaN or infinite value$"),
        (lambda s: s["layers.0.bias"].__setitem__(slice(0, 2), np.inf),
         r"'layers.0.bias' holds 2 NaN or infinite values"),
    ],
)
def test_load_state_dict_names_the_problem_and_changes_nothing(change, message):
    model = two_layer(0)
    before = model.state_dict()
    state = two_layer(1).state_dict()
    change(state)
    with pytest.raises(ValueError, match=message):
        model.load_state_dict(state)
    assert_unchanged(model, before)


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "model.npz"
    source = two_layer(0)
    source.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as saved:  # a plain .npz, readable without this library
        assert sorted(saved.files) == sorted(source.state_dict())
    target = two_layer(1).load(path)
    for name, array in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], array)


def test_save_into_a_missing_directory_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory .*missing.* does not exist"):
        two_layer().save(tmp_path / "missing" / "model.npz")
    assert os.listdir(tmp_path) == []


def test_a_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    two_layer(0).save(path)
    original = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError, match="disk full"):
        two_layer(1).save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["model.npz"]


def write_corrupt_files(directory):
    """Files `load` must refuse: text, a truncated archive, a plain .npy, a pickled object array."""
    good = directory / "good.npz"
    two_layer().save(good)
    files = {"text": b"not a model\n", "truncated": good.read_bytes()[:100], "empty": b""}
    for name, content in files.items():
        (directory / f"{name}.npz").write_bytes(content)
    np.save(directory / "single.npy", np.zeros(3))
    np.savez(directory / "pickled.npz", **{"layers.0.weight": np.array([{}], dtype=object)})
    return [directory / f"{name}.npz" for name in files] + [directory / "single.npy", directory / "pickled.npz"]


def test_load_refuses_corrupt_files_without_unpickling_or_changing_the_model(tmp_path):
    model = two_layer()
    before = model.state_dict()
    for path in write_corrupt_files(tmp_path):
        with pytest.raises(ValueError, match="cannot load"):
            model.load(path)
        assert_unchanged(model, before)


def test_load_of_a_mismatched_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "wide.npz"
    nn.MLP([4, 6, 3], rng=0).save(path)
    model = two_layer()
    before = model.state_dict()
    with pytest.raises(ValueError, match=r"wide.npz.*shape mismatch for 'layers.0.weight'.*\(5, 4\), got \(6, 4\)"):
        model.load(path)
    assert_unchanged(model, before)


def test_load_of_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        two_layer().load(tmp_path / "absent.npz")


def test_load_of_a_directory_says_it_is_one(tmp_path):
    with pytest.raises(IsADirectoryError, match="it is a directory; expected an .npz file"):
        two_layer().load(tmp_path)


def test_load_of_integer_weights_says_what_was_cast(tmp_path):
    path = tmp_path / "ints.npz"
    model = two_layer(0)
    np.savez(path, **{name: np.round(array * 10).astype(np.int64) for name, array in model.state_dict().items()})
    with pytest.warns(UserWarning, match="cast 'layers.0.weight' from int64 to float32") as caught:
        two_layer(1).load(path)
    assert len(caught) == 1


def test_load_of_float32_weights_into_a_float32_model_is_silent(tmp_path, recwarn):
    path = tmp_path / "model.npz"
    two_layer(0).save(path)
    two_layer(1).load(path)
    assert not [warning for warning in recwarn if issubclass(warning.category, UserWarning)]


def test_save_where_the_parent_is_a_file_says_so(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(NotADirectoryError, match=r"plain' is a file, not a directory"):
        two_layer().save(tmp_path / "plain" / "sub" / "model.npz")


def test_save_onto_a_directory_names_it(tmp_path):
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=r"cannot write '.*model.npz': it is a directory"):
        two_layer().save(tmp_path / "model.npz")


def test_a_write_error_names_the_users_path_not_the_temporary_file(tmp_path, monkeypatch):
    """os.replace refusing (as a pseudo-filesystem does) is reported against model.npz, in words, no errno."""

    def refuse(source, target):
        raise PermissionError(1, "Operation not permitted", source)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as caught:
        two_layer().save(tmp_path / "model.npz")
    assert str(caught.value) == f"cannot write {str(tmp_path / 'model.npz')!r}: Operation not permitted"
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs sysfs, which refuses new files even to root")
def test_save_into_a_directory_that_refuses_new_files():
    with pytest.raises(OSError, match=r"cannot write '/sys/kernel/model.npz': the directory '/sys/kernel' refuses"):
        two_layer().save("/sys/kernel/model.npz")


def test_saved_archive_entries_are_npy_files(tmp_path):
    path = tmp_path / "model.npz"
    two_layer().save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == sorted(f"{name}.npy" for name in two_layer().state_dict())


def test_saved_file_gets_the_permissions_of_a_new_file(tmp_path):
    path = tmp_path / "model.npz"
    two_layer().save(path)
    (tmp_path / "plain").write_bytes(b"")
    assert os.stat(path).st_mode & 0o777 == os.stat(tmp_path / "plain").st_mode & 0o777


def test_linear_names_the_expected_number_of_features():
    with pytest.raises(ValueError, match=r"^Linear: expected inputs with 3 features .* got shape \(4, 5\)$"):
        nn.Linear(3, 2)(Tensor(np.zeros((4, 5))))
    with pytest.raises(ValueError, match=r"^SoftmaxRegression: expected inputs with 3 features"):
        nn.SoftmaxRegression(3, 2)(Tensor(np.zeros(5)))


@pytest.mark.parametrize(
    "x_shape, weight_shape, bias_shape, message",
    [
        ((4, 3), (2, 3, 1), (2,), r"weight must be 2-D \(out_features, in_features\), got shape \(2, 3, 1\)"),
        ((), (2, 3), (2,), r"a weight of shape \(2, 3\) .* expects inputs with 3 features .* got shape \(\)$"),
        ((4, 2), (2, 3), (2,), r".* features in the last axis, got shape \(4, 2\) \(is the weight transposed\?\)"),
        ((4, 3), (2, 3), (3,), r"bias must have shape \(2,\) \(out_features,\), got \(3,\)"),
    ],
)
def test_functional_linear_names_what_does_not_fit(x_shape, weight_shape, bias_shape, message):
    with pytest.raises(ValueError, match="linear: " + message):
        F.linear(Tensor(np.zeros(x_shape)), Tensor(np.zeros(weight_shape)), Tensor(np.zeros(bias_shape)))


@pytest.mark.parametrize("x_shape, weight_shape", [((5, 3), (0, 3)), ((5, 0), (4, 0)), ((0, 3), (4, 3))])
def test_functional_linear_with_an_empty_axis_matches_the_primitive_ops(x_shape, weight_shape):
    fused = [Tensor(np.ones(shape), requires_grad=True) for shape in (x_shape, weight_shape, weight_shape[:1])]
    composed = [Tensor(np.ones(shape), requires_grad=True) for shape in (x_shape, weight_shape, weight_shape[:1])]
    F.linear(*fused).sum().backward()
    (composed[0] @ composed[1].T + composed[2]).sum().backward()
    for mine, reference in zip(fused, composed):
        assert mine.grad.shape == mine.shape
        np.testing.assert_array_equal(mine.grad.data, reference.grad.data)


def test_a_linear_layer_is_one_node_with_the_hand_derived_gradients():
    """d(x Wᵀ + b): dW = gᵀ x and db = Σ g over the rows, the gradient of x is g W; one Linear node, no others."""
    layer = nn.Linear(4, 3, rng=1, dtype=np.float64)
    rng = np.random.default_rng(3)
    x = Tensor(rng.standard_normal((5, 4)), requires_grad=True)
    g = rng.standard_normal((5, 3))
    out = layer(x)
    assert out.grad_fn.op_name == "Linear" and out.grad_fn.parents == (x, layer.weight, layer.bias)
    out.backward(g)
    np.testing.assert_allclose(layer.weight.grad.data, g.T @ x.data, rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad.data, g.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(x.grad.data, g @ layer.weight.data, rtol=1e-12)


def test_saved_files_get_the_mode_of_a_plain_new_file(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    path = tmp_path / "model.npz"
    nn.Linear(2, 2).save(path)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
