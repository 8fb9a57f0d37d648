"""Calibration: how far predicted risks are from observed rates, and recalibrating them.

>>> calibrator = fit_calibrator("binary", y_val, p_val, method="temperature")
>>> expected_calibration_error(y_test, calibrator.transform(p_test))

Conventions follow the scores' shape: a 1-D ``p`` is binary (P(positive) against 0/1 labels), a
2-D ``p`` with 1-D ``y`` is multiclass (top-label: confidence = max probability, outcome = argmax
is right), a 2-D ``p`` with 2-D ``y`` is multilabel. A fitted :class:`Calibrator` is plain numbers
(:meth:`Calibrator.get_config`), so it is saved as JSON and reloaded without pickles.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax
from sklearn.isotonic import IsotonicRegression

from medtorch.errors import ConfigError

EPS = 1e-6
METHODS = ("none", "temperature", "platt", "isotonic")
TASK_TYPES = ("binary", "multiclass", "multilabel", "regression")
_REQUIRED_PARAMS = {
    "none": (),
    "temperature": ("temperature",),
    "platt": ("a", "b"),
    "isotonic": ("X_thresholds", "y_thresholds"),
}
_TEMPERATURE_BOUNDS = (0.05, 20.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # A small temperature can push sigmoid to exactly 0 or 1 in float64; keep strictly inside.
    return np.clip(expit(x), EPS, 1 - EPS)


def _inputs(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Labels and scores as float arrays, and which convention their shapes imply."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    if len(y) != len(p):
        raise ConfigError(f"labels and scores differ in length ({len(y)} vs {len(p)})")
    if len(y) == 0:
        raise ConfigError("calibration needs at least one row")
    if p.ndim == 1:
        return y.astype(float), p, "binary"
    if y.ndim == 1:
        return y.astype(int), p, "multiclass"
    return y.astype(float), p, "multilabel"


def _bins(confidence: np.ndarray, outcome: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean confidence and mean outcome of each non-empty equal-width bin over [0, 1]."""
    if n_bins < 1:
        raise ConfigError(f"n_bins must be at least 1, got {n_bins}")
    index = np.clip(np.floor(confidence * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins)
    mean_outcome = np.bincount(index, weights=outcome, minlength=n_bins)
    filled = count > 0
    return count[filled], mean_confidence[filled] / count[filled], mean_outcome[filled] / count[filled]


def _binary_ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    count, confidence, observed = _bins(p, y, n_bins)
    return float(np.sum(count * np.abs(confidence - observed)) / count.sum())


def _top_label(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(float)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """Count-weighted mean |confidence - observed| over equal-width bins.

    Binary: P(positive) against the positive fraction; multiclass: top-label ECE; multilabel:
    the mean of each label's binary ECE.
    """
    y, p, kind = _inputs(y, p)
    if kind == "binary":
        return _binary_ece(y, p, n_bins)
    if kind == "multiclass":
        confidence, correct = _top_label(y, p)
        return _binary_ece(correct, confidence, n_bins)
    return float(np.mean([_binary_ece(y[:, j], p[:, j], n_bins) for j in range(p.shape[1])]))


def reliability_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, list]:
    """Points of a reliability diagram: ``confidence``, ``observed`` and ``count`` per non-empty bin.

    Same conventions as :func:`expected_calibration_error`, except that multilabel pools all labels.
    """
    y, p, kind = _inputs(y, p)
    if kind == "multiclass":
        p, y = _top_label(y, p)
    count, confidence, observed = _bins(p.ravel(), y.ravel(), n_bins)
    return {"confidence": confidence.tolist(), "observed": observed.tolist(), "count": count.tolist()}


def _nll(eta: np.ndarray, y: np.ndarray) -> float:
    """Bernoulli negative log-likelihood (summed) at log-odds ``eta``, overflow-free."""
    return float(np.sum(np.logaddexp(0.0, eta) - y * eta))


def _logistic_fit(design: np.ndarray, y: np.ndarray, offset: np.ndarray, start: list[float]) -> np.ndarray:
    """Unpenalised logistic regression by Newton's method, halving steps that do not lower the loss."""
    beta = np.asarray(start, dtype=float)
    loss = _nll(design @ beta + offset, y)
    for _ in range(100):
        mu = expit(design @ beta + offset)
        gradient = design.T @ (mu - y)
        hessian = design.T @ (design * (mu * (1 - mu))[:, None])
        step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        for _ in range(40):
            candidate = beta - step
            candidate_loss = _nll(design @ candidate + offset, y)
            if candidate_loss <= loss:
                break
            step = step / 2
        else:
            break
        converged = np.max(np.abs(candidate - beta)) < 1e-10
        beta, loss = candidate, candidate_loss
        if converged:
            break
    return beta


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Calibration slope and calibration-in-the-large of binary risks; (1, 0) is perfect.

    The slope is ``b`` in logit P(y) = a + b·logit(p); the intercept is ``a'`` in
    logit P(y) = a' + logit(p) (slope fixed at 1). NaN for both when ``y`` has one class.
    """
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if p.ndim != 1:
        raise ConfigError("calibration slope and intercept are for binary scores (a 1-D array of P(positive))")
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    x = _logit(p)
    ones = np.ones((len(x), 1))
    slope = _logistic_fit(np.hstack([ones, x[:, None]]), y, np.zeros_like(x), [0.0, 1.0])[1]
    intercept = _logistic_fit(ones, y, x, [0.0])[0]
    return float(slope), float(intercept)


@dataclass
class Calibrator:
    """A fitted recalibration map from scores to probabilities; plain numbers only.

    ``params``: temperature → ``{"temperature": T}`` (a list, one per label, for multilabel);
    platt → ``{"a": a, "b": b}``; isotonic → ``{"X_thresholds": [...], "y_thresholds": [...]}``.
    """

    method: str
    task_type: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown calibration method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.task_type not in TASK_TYPES:
            raise ConfigError(f"unknown task type {self.task_type!r}")
        missing = [key for key in _REQUIRED_PARAMS[self.method] if key not in self.params]
        if missing:
            raise ConfigError(f"calibration {self.method!r} needs params {', '.join(missing)}")

    def transform(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, the same shape as ``scores``."""
        scores = np.asarray(scores, dtype=float)
        if self.method == "none" or self.task_type == "regression":
            return scores.copy()
        if self.method == "platt":
            return _sigmoid(self.params["a"] * _logit(scores) + self.params["b"])
        if self.method == "isotonic":
            return np.interp(scores, self.params["X_thresholds"], self.params["y_thresholds"])
        return _apply_temperature(self.task_type, scores, self.params["temperature"])

    def get_config(self) -> dict[str, Any]:
        return {"method": self.method, "task_type": self.task_type, "params": copy.deepcopy(self.params)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Calibrator:
        try:
            return cls(config["method"], config["task_type"], copy.deepcopy(config.get("params", {})))
        except (KeyError, TypeError) as error:
            raise ConfigError(f"a calibrator config needs 'method' and 'task_type' (missing {error})") from None


def _apply_temperature(task_type: str, scores: np.ndarray, temperature: float | list[float]) -> np.ndarray:
    if task_type == "multiclass":
        # log p equals the logits up to a per-row constant, which softmax ignores.
        probabilities = softmax(np.log(np.clip(scores, EPS, 1.0)) / temperature, axis=1)
        probabilities = np.clip(probabilities, EPS, None)
        return probabilities / probabilities.sum(axis=1, keepdims=True)
    temperature = np.asarray(temperature, dtype=float)
    if task_type == "multilabel" and temperature.shape not in ((), (scores.shape[1],)):
        raise ConfigError(f"{temperature.size} temperatures for {scores.shape[1]} labels")
    return _sigmoid(_logit(scores) / temperature)


def _minimise_over_temperature(nll: Callable[[float], float]) -> float:
    """The temperature in the allowed range with the lowest validation NLL (searched over log T)."""
    low, high = np.log(_TEMPERATURE_BOUNDS[0]), np.log(_TEMPERATURE_BOUNDS[1])
    result = minimize_scalar(
        lambda log_t: nll(np.exp(log_t)), bounds=(low, high), method="bounded", options={"xatol": 1e-6}
    )
    return float(np.exp(result.x))


def platt_targets(y: np.ndarray) -> np.ndarray:
    """Platt's (1999) smoothed targets, (N+ + 1)/(N+ + 2) and 1/(N- + 2): on a validation set the
    model separates perfectly, plain 0/1 targets would drive the temperature to zero and every
    probability to 0 or 1."""
    positives, negatives = float(np.sum(y == 1)), float(np.sum(y == 0))
    return np.where(y == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))


def _binary_temperature(y: np.ndarray, p: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return 1.0
    x, targets = _logit(p), platt_targets(y)
    return _minimise_over_temperature(lambda t: _nll(x / t, targets))


def _multiclass_temperature(y: np.ndarray, p: np.ndarray) -> float:
    log_p = np.log(np.clip(p, EPS, 1.0))
    k = p.shape[1]
    counts = np.bincount(y, minlength=k).astype(float)
    spill = 1 / (counts[y] + 2)  # Platt's smoothing per class: the true class gets (n_k + 1)/(n_k + 2)
    targets = np.repeat((spill / (k - 1))[:, None], k, axis=1)
    targets[np.arange(len(y)), y] = 1 - spill
    return _minimise_over_temperature(lambda t: -float(np.sum(targets * log_softmax(log_p / t, axis=1))))


def _fit_temperature(task_type: str, y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    if task_type == "multiclass":
        return {"temperature": _multiclass_temperature(y.astype(int), p)}
    if task_type == "multilabel":
        return {"temperature": [_binary_temperature(y[:, j], p[:, j]) for j in range(p.shape[1])]}
    return {"temperature": _binary_temperature(y, p)}


def _fit_platt(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    x = _logit(p)
    b, a = _logistic_fit(np.column_stack([np.ones_like(x), x]), platt_targets(y), np.zeros_like(x), [0.0, 1.0])
    return {"a": float(a), "b": float(b)}


def _fit_isotonic(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, y)
    return {"X_thresholds": isotonic.X_thresholds_.tolist(), "y_thresholds": isotonic.y_thresholds_.tolist()}


def fit_calibrator(task_type: str, y: np.ndarray, scores: np.ndarray, method: str = "temperature") -> Calibrator:
    """Fit ``method`` on validation labels and scores.

    Regression, ``"none"``, and labels with a single class give the identity calibrator.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    if task_type not in TASK_TYPES:
        raise ConfigError(f"unknown task type {task_type!r}")
    if method in ("platt", "isotonic") and task_type != "binary":
        raise ConfigError(f"calibration {method!r} is for binary tasks; use 'temperature'")
    y, scores = np.asarray(y, dtype=float), np.asarray(scores, dtype=float)
    if len(y) != len(scores):
        raise ConfigError(f"labels and scores differ in length ({len(y)} vs {len(scores)})")
    if method == "none" or task_type == "regression" or len(np.unique(y)) < 2:
        return Calibrator("none", task_type, {})
    if method == "temperature":
        return Calibrator(method, task_type, _fit_temperature(task_type, y, scores))
    fit = _fit_platt if method == "platt" else _fit_isotonic
    return Calibrator(method, task_type, fit(y, scores))
