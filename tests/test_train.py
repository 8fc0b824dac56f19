"""Training on the digits: the default recipes reach their bars, runs repeat, and `tinygrad-sm train` / `demo`."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tinygrad_sm import data, nn
from tinygrad_sm.train import LOGISTIC_DIGITS, RECIPES, accuracy, loss_and_predictions, recipe_for, train

BARS = {"mlp": 0.96, "softmax": 0.94, "logistic": 0.98}


@pytest.mark.parametrize("name", sorted(BARS))
def test_default_recipe_reaches_its_test_accuracy(name):
    """The full default recipe of each model (about a second each): the accuracies the README records."""
    assert RECIPES[name].epochs <= 50
    result = train(name, seed=0, progress=False)
    assert result.test_accuracy >= BARS[name]
    assert result.train_accuracy >= BARS[name]
    assert result.history[-1][0] < result.history[0][0] / 3  # the loss came down


def test_accuracy_agrees_with_numpy_predictions():
    X_train, X_test, y_train, y_test = data.load_digits()
    model = nn.SoftmaxRegression(64, 10, rng=0)
    predicted = np.argmax(X_test @ model.weight.data.T + model.bias.data, axis=1)
    assert accuracy(model, X_test, y_test) == pytest.approx(np.mean(predicted == y_test))
    X_train, X_test, y_train, y_test = data.load_binary_digits(*LOGISTIC_DIGITS)
    model = nn.LogisticRegression(64, rng=1)
    predicted = (X_test @ model.weight.data[0] + model.bias.data[0]) > 0
    assert accuracy(model, X_test, y_test) == pytest.approx(np.mean(predicted == (y_test == 1)))


def test_the_loss_is_the_fused_node():
    X, _, y, _ = data.load_digits()
    loss, _ = loss_and_predictions(nn.MLP([64, 8, 10], rng=0), X[:4], y[:4])
    assert loss.grad_fn.op_name == "SoftmaxCrossEntropy"
    X, _, y, _ = data.load_binary_digits()
    loss, _ = loss_and_predictions(nn.LogisticRegression(64, rng=0), X[:4], y[:4])
    assert loss.grad_fn.op_name == "BinaryCrossEntropyWithLogits"


def test_same_seed_same_numbers_other_seed_other_weights():
    recipe = recipe_for("mlp", epochs=2)
    first, again, other = (train("mlp", recipe, hidden=16, seed=seed, progress=False) for seed in (3, 3, 4))
    assert first.history == again.history
    assert (first.train_accuracy, first.test_accuracy) == (again.train_accuracy, again.test_accuracy)
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(first.model.parameters()[0].data, other.model.parameters()[0].data)


def test_saved_model_loads_to_the_same_accuracy(tmp_path):
    path = tmp_path / "softmax.npz"
    trained = train("softmax", recipe_for("softmax", epochs=3), save=path, progress=False)
    loaded = train("softmax", recipe_for("softmax", epochs=0), seed=9, load=path, progress=False)
    assert (loaded.train_accuracy, loaded.test_accuracy) == (trained.train_accuracy, trained.test_accuracy)


@pytest.mark.parametrize(
    "overrides, message",
    [(dict(lr=-0.1), "learning rate must be >= 0"), (dict(epochs=-1), "epochs must be >= 0"),
     (dict(batch_size=0), "batch size must be at least 1"), (dict(optimizer="rmsprop"), "unknown optimizer"),
     (dict(weight_decay=-1.0), "weight decay must be >= 0")],
)
def test_bad_recipes(overrides, message):
    with pytest.raises(ValueError, match=message):
        recipe_for("mlp", **overrides)


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'cnn'; expected one of softmax, logistic, mlp"):
        train("cnn")


# ---- the command line, run as a user runs it ----

def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinygrad_sm", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


FINAL_LINE = re.compile(r"^(\w+): train accuracy (\d+\.\d\d)%, test accuracy (\d+\.\d\d)%$", re.MULTILINE)


def test_cli_train_bars_final_line_save_and_load(tmp_path):
    """One plain line per epoch (stderr is not a terminal); the final line equals an in-process run with the same
    seed; the saved model reloads."""
    path = tmp_path / "mlp.npz"
    result = train("mlp", recipe_for("mlp", epochs=3), hidden=32, seed=5, progress=False)
    run = cli("train", "--model", "mlp", "--hidden", "32", "--epochs", "3", "--seed", "5", "--save", path)
    assert run.returncode == 0, run.stderr
    assert [line.split(":")[0] for line in run.stderr.splitlines()] == ["epoch  1/3", "epoch  2/3", "epoch  3/3"]
    for epoch, (loss, share_correct) in enumerate(result.history, start=1):
        assert f"epoch  {epoch}/3: loss {loss:.4f}, accuracy {share_correct:.4f}" in run.stderr
    assert f"saved the model to {path}" in run.stdout
    final = FINAL_LINE.search(run.stdout)
    assert final.group(0) == result.summary()
    evaluated = cli("train", "--model", "mlp", "--hidden", "32", "--epochs", "0", "--load", path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert FINAL_LINE.search(evaluated.stdout).group(0) == final.group(0)


def test_a_terminal_gets_one_tqdm_bar_per_epoch():
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(sys.executable, ["-m", "tinygrad_sm", "train", "--model", "softmax", "--epochs", "2"],
                          encoding="utf-8", timeout=60, dimensions=(24, 200))
    output = child.read()
    child.close()
    assert child.exitstatus == 0, output
    for epoch in (1, 2):
        assert re.search(rf"epoch  {epoch}/2: 100%\|.*\| 45/45 .*accuracy=0\.\d{{4}}, loss=\d\.\d{{4}}", output)
    assert "epoch  1/2: loss" not in output


def test_cli_help_says_which_digits_logistic_uses_and_the_recipes():
    run = cli("train", "--help")
    assert run.returncode == 0
    assert "digit 4 (label 0) against digit 9 (label 1)" in " ".join(run.stdout.split())
    for name, recipe in RECIPES.items():
        assert re.search(rf"{name}\s+{recipe.optimizer}, lr {recipe.lr:g}, {recipe.epochs} epochs", run.stdout)


def assert_one_line_error(run, *fragments):
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("--model", "cnn"), ("invalid choice: 'cnn'",)),
        (("--lr", "-0.1"), ("learning rate must be >= 0 and finite, got -0.1",)),
        (("--lr", "inf"), ("learning rate must be >= 0 and finite, got inf",)),
        (("--epochs", "-2"), ("argument --epochs: expected a whole number >= 0, got -2",)),
        (("--batch-size", "0"), ("argument --batch-size: expected a whole number >= 1, got 0",)),
        (("--hidden", "0"), ("argument --hidden: expected a whole number >= 1, got 0",)),
        (("--seed", "-1"), ("argument --seed: expected a whole number >= 0, got -1",)),
        (("--seed", "x"), ("argument --seed: expected a whole number >= 0, got x",)),
        (("--epochs", "1.5"), ("argument --epochs: expected a whole number >= 0, got 1.5",)),
        (("--foo",), ("tinygrad-sm train: error: unrecognized arguments: --foo",)),
        (("--model", "softmax", "--hidden", "64"), ("--hidden sets the hidden layer of the mlp",)),
        (("--momentum", "0.5"), ("--momentum applies to --optimizer sgd only",)),
    ],
)
def test_cli_bad_arguments(args, fragments):
    assert_one_line_error(cli("train", *args), *fragments)


def test_cli_save_into_a_missing_directory_fails_before_training(tmp_path):
    run = cli("train", "--model", "softmax", "--save", tmp_path / "missing" / "model.npz")
    assert_one_line_error(run, "does not exist")
    assert run.stdout == ""  # nothing was trained
    assert os.listdir(tmp_path) == []


def test_cli_corrupt_or_mismatched_load_overwrites_nothing(tmp_path):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    mlp = tmp_path / "mlp.npz"
    nn.MLP([64, 128, 10], rng=0).save(mlp)
    contents = {path: path.read_bytes() for path in (corrupt, mlp)}
    run = cli("train", "--model", "softmax", "--load", corrupt, "--save", mlp)
    assert_one_line_error(run, "cannot load", "corrupt.npz")
    run = cli("train", "--model", "softmax", "--load", mlp, "--save", corrupt)
    assert_one_line_error(run, "mlp.npz", "missing key 'weight'", "unexpected key 'layers.0.weight'")
    run = cli("train", "--model", "mlp", "--hidden", "64", "--load", mlp, "--save", mlp)
    assert_one_line_error(run, "shape mismatch for 'layers.0.weight': the model has (64, 64), got (128, 64)")
    assert {path: path.read_bytes() for path in contents} == contents
    assert sorted(os.listdir(tmp_path)) == ["corrupt.npz", "mlp.npz"]


def test_demo_trains_checks_and_draws_the_mlp(tmp_path):
    graph = tmp_path / "demo.svg"
    run = cli("demo", "--graph", str(graph))
    assert run.returncode == 0, run.stderr
    epochs = RECIPES["mlp"].epochs
    assert f"epoch {epochs}/{epochs}: loss" in run.stderr
    final = FINAL_LINE.search(run.stdout)
    assert final.group(1) == "mlp" and float(final.group(3)) >= 100 * BARS["mlp"]
    assert run.stdout.count("pass") == 4 and "every node's backward matches its forward" in run.stdout
    assert str(graph) in run.stdout and "layers.0: Linear" in graph.read_text()
