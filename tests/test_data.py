"""data: the digits split (shapes, dtypes, scaling, stratification, fixed) and batches."""

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from tinygrad_sm import data

DIGITS = sklearn_digits()


def rows_as_bytes(X):
    return sorted(row.tobytes() for row in np.asarray(X, dtype=np.float32))


def test_load_digits_shapes_dtypes_and_scaling():
    X_train, X_test, y_train, y_test = data.load_digits()
    assert X_train.shape == (1437, 64) and X_test.shape == (360, 64)
    assert y_train.shape == (1437,) and y_test.shape == (360,)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    both = np.concatenate([X_train, X_test])
    assert both.min() == 0.0 and both.max() == 1.0
    # every image of scikit-learn's set appears exactly once, divided by 16 (its pixels run 0..16)
    assert rows_as_bytes(both) == rows_as_bytes(DIGITS.data / 16.0)
    np.testing.assert_array_equal(np.bincount(np.concatenate([y_train, y_test])), np.bincount(DIGITS.target))


def test_load_digits_split_is_stratified():
    _, _, y_train, y_test = data.load_digits()
    total = np.bincount(DIGITS.target)
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - 0.2 * total) <= 1)
    assert np.all(np.abs(np.bincount(y_train, minlength=10) - 0.8 * total) <= 1)


def test_load_digits_split_is_fixed_by_its_seed():
    first, again, other = data.load_digits(), data.load_digits(), data.load_digits(seed=1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[3], other[3])
    assert data.load_digits(test_size=0.25)[1].shape == (450, 64)


def test_load_binary_digits_holds_only_the_two_digits():
    X_train, X_test, y_train, y_test = data.load_binary_digits(negative=4, positive=9)
    assert X_train.dtype == np.float32 and y_train.dtype == y_test.dtype == np.float32
    counts = np.bincount(DIGITS.target)
    assert len(X_train) + len(X_test) == counts[4] + counts[9]
    assert set(np.unique(np.concatenate([y_train, y_test]))) == {0.0, 1.0}
    X, y = np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test])
    assert rows_as_bytes(X[y == 1]) == rows_as_bytes(DIGITS.data[DIGITS.target == 9] / 16.0)
    assert rows_as_bytes(X[y == 0]) == rows_as_bytes(DIGITS.data[DIGITS.target == 4] / 16.0)
    assert abs(y_test.sum() - 0.2 * counts[9]) <= 1  # stratified


@pytest.mark.parametrize("digits, message", [((4, 4), "must differ"), ((4, 10), "positive must be a digit 0-9")])
def test_load_binary_digits_rejects_bad_digits(digits, message):
    with pytest.raises(ValueError, match=message):
        data.load_binary_digits(*digits)


def indexed(n):
    """Rows that say where they came from: X[i] = (i, 2i), y[i] = i."""
    index = np.arange(n)
    return np.stack([index, 2 * index], axis=1), index


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_row_once_and_keep_pairs_together(shuffle):
    X, y = indexed(103)
    chunks = list(data.batches(X, y, batch_size=10, shuffle=shuffle, seed=0))
    assert [len(xb) for xb, _ in chunks] == [10] * 10 + [3]
    order = np.concatenate([yb for _, yb in chunks])
    assert sorted(order) == list(range(103))
    assert (order.tolist() == list(range(103))) is not shuffle
    for xb, yb in chunks:
        np.testing.assert_array_equal(xb[:, 0], yb)


def test_batches_order_follows_the_seed():
    X, y = indexed(50)

    def order(seed):
        return np.concatenate([yb for _, yb in data.batches(X, y, 8, seed=seed)])

    np.testing.assert_array_equal(order(3), order(3))
    assert not np.array_equal(order(3), order(4))
    generator = np.random.default_rng(5)  # a Generator goes on drawing: each epoch gets a new order
    first, second = (np.concatenate([yb for _, yb in data.batches(X, y, 8, seed=generator)]) for _ in range(2))
    assert not np.array_equal(first, second)


def test_batches_bad_arguments():
    X, y = indexed(5)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        list(data.batches(X, y, 0))
    with pytest.raises(ValueError, match="X has 5 rows but y has 4"):
        list(data.batches(X, y[:4], 2))


def test_the_shipped_digits_are_two_plain_arrays():
    """digits.npz loads without unpickling and holds scikit-learn's images (checked above) as uint8 0..16."""
    from importlib import resources

    with resources.files("tinygrad_sm").joinpath("digits.npz").open("rb") as file, np.load(file) as saved:
        assert sorted(saved.files) == ["images", "labels"]
        images, labels = saved["images"], saved["labels"]
    assert images.shape == (1797, 8, 8) and images.dtype == labels.dtype == np.uint8
    np.testing.assert_array_equal(images.reshape(1797, 64), DIGITS.data)
    np.testing.assert_array_equal(labels, DIGITS.target)


def test_split_parts_are_disjoint_cover_every_row_and_are_mixed():
    X_train, X_test, y_train, y_test = data.load_digits(seed=3)
    assert not {row.tobytes() for row in X_train} & {row.tobytes() for row in X_test}  # the 1797 images all differ
    assert len(X_train) + len(X_test) == 1797
    assert len(np.unique(y_train[:32])) >= 8  # in random order, not class by class: X[:32] is a mixed batch


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.2])
def test_split_rejects_a_test_size_outside_0_1(test_size):
    with pytest.raises(ValueError, match=f"test_size must lie strictly between 0 and 1, got {test_size}"):
        data.load_digits(test_size=test_size)
