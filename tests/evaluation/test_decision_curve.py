"""Decision curves: net benefit checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from medtorch.errors import ConfigError
from medtorch.evaluation.decision_curve import decision_curve

# Five patients, prevalence 0.6.
Y = np.array([1, 1, 0, 0, 1])
P = np.array([0.9, 0.4, 0.6, 0.2, 0.7])


def test_net_benefit_by_hand():
    curve = decision_curve(Y, P, thresholds=[0.25, 0.5, 0.6, 0.8])
    assert curve["threshold"] == [0.25, 0.5, 0.6, 0.8]
    # 0.25: treat 0.9, 0.4, 0.6, 0.7 -> TP 3, FP 1, odds 1/3: 3/5 - 1/5 * 1/3.
    # 0.5: TP 2, FP 1, odds 1. 0.6 (p >= pt, so 0.6 is treated): TP 2, FP 1, odds 1.5. 0.8: TP 1.
    assert curve["model"] == pytest.approx([0.6 - 0.2 / 3, 0.2, 0.1, 0.2])
    assert curve["treat_all"] == pytest.approx([0.6 - 0.4 / 3, 0.2, 0.0, 0.6 - 0.4 * 4])
    assert curve["treat_none"] == [0.0, 0.0, 0.0, 0.0]


def test_treat_all_is_prevalence_minus_weighted_negatives():
    curve = decision_curve(Y, P)
    pt = np.array(curve["threshold"])
    assert curve["treat_all"] == pytest.approx(0.6 - 0.4 * pt / (1 - pt))
    # Treating everyone is worth nothing at exactly the odds of prevalence (pt = 0.6).
    assert curve["treat_all"][curve["threshold"].index(0.6)] == pytest.approx(0.0)


def test_default_thresholds():
    curve = decision_curve(Y, P)
    assert len(curve["threshold"]) == 99
    assert curve["threshold"][0] == 0.01 and curve["threshold"][9] == 0.1 and curve["threshold"][-1] == 0.99
    assert all(len(curve[key]) == 99 for key in ("model", "treat_all", "treat_none"))


def test_perfect_classifier_earns_the_prevalence_everywhere():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(int)
    curve = decision_curve(y, y.astype(float))
    assert curve["model"] == pytest.approx([y.mean()] * 99)


def test_user_errors():
    with pytest.raises(ConfigError, match="binary"):
        decision_curve(np.array([0, 1]), np.array([[0.5, 0.5], [0.2, 0.8]]))
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        decision_curve(Y, P, thresholds=[0.0, 0.5])
    with pytest.raises(ConfigError):
        decision_curve(Y, P[:3])
