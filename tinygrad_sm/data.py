"""The digits data set (8x8 images, 10 classes; it ships with scikit-learn, no download), splits and batches."""

import numpy as np


def load_digits(seed=0, test_size=0.2):
    """(X_train, X_test, y_train, y_test): features in [0, 1] as float32, int64 labels, a fixed stratified split."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    features = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    return tuple(train_test_split(features, labels, test_size=test_size, random_state=seed, stratify=labels))


def batches(X, y, batch_size, shuffle=True, seed=0):
    """Yield (X_batch, y_batch) pairs that cover the data once; the last batch may be smaller."""
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be at least 1, got {batch_size}")
    if len(X) != len(y):
        raise ValueError(f"batches: X has {len(X)} rows but y has {len(y)}")
    order = np.random.default_rng(seed).permutation(len(X)) if shuffle else np.arange(len(X))
    for start in range(0, len(X), batch_size):
        chosen = order[start : start + batch_size]
        yield X[chosen], y[chosen]


def load_binary_digits(negative=4, positive=9, seed=0, test_size=0.2):
    """The digits `negative` (label 0) and `positive` (label 1) only, split like `load_digits`; labels float32."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    digits = sklearn_digits()
    chosen = (digits.target == negative) | (digits.target == positive)
    features = (digits.data[chosen] / 16.0).astype(np.float32)
    labels = (digits.target[chosen] == positive).astype(np.float32)
    return tuple(train_test_split(features, labels, test_size=test_size, random_state=seed, stratify=labels))
