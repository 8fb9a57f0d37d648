"""The scikit-learn models' own promises (the registry tests cover what every model shares)."""

from __future__ import annotations

import numpy as np

from medtorch.registry import create_model


def test_extra_trees_keep_their_size_bounded_on_a_large_table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 5))
    y = (X[:, 0] + rng.normal(size=4000) > 0).astype(int)  # noisy: fully grown trees would take ~1000 leaves each
    model = create_model("extra_trees", task_type="binary", seed=0, n_estimators=5).fit(X, y)
    assert max(tree.tree_.n_leaves for tree in model.estimators_) <= 256
    unbounded = create_model("extra_trees", task_type="binary", seed=0, n_estimators=5, max_leaf_nodes=None).fit(X, y)
    assert min(tree.tree_.n_leaves for tree in unbounded.estimators_) > 256


def test_boosting_takes_its_learning_rate_and_rounds():
    """The window defaults fit boosting at rate 0.05 for 400 rounds; both settings must reach the model that learns."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(int)
    slow = create_model("hist_gradient_boosting", task_type="binary", learning_rate=0.05, max_iter=7).fit(X, y)
    fast = create_model("hist_gradient_boosting", task_type="binary", max_iter=7).fit(X, y)
    assert slow.n_iter_ == fast.n_iter_ == 7
    # after the same rounds the slower learner has moved its probabilities less far from the prior
    assert np.abs(slow.predict_proba(X)[:, 1] - 0.5).mean() < np.abs(fast.predict_proba(X)[:, 1] - 0.5).mean()
