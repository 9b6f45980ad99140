"""Classifier heads over item vectors, with the scikit-learn estimator API.

Heads follow scikit-learn's conventions (constructors store parameters, `fit` returns self,
`predict_proba` has one column per entry of `classes_`), so modAL, cleanlab and scikit-learn's
calibration accept them as they are. Calibration is fitted only on randomly sampled labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from workbench.errors import WorkbenchError

# torch is imported inside the MLP head's methods: it takes seconds to load, and the default
# logistic head (and every process that only unpickles one) never needs it.

UNSURE = "unsure"
MIN_CALIBRATION_LABELS = 50


def trainable(labels: Sequence[Any] | np.ndarray, unsure: str = UNSURE) -> np.ndarray:
    """Mask of the labels a head may learn from: `unsure` says nothing about the policy."""
    arr = np.asarray(labels, dtype=object)
    return np.array([lab is not None and lab != unsure for lab in arr], dtype=bool)


def _check_xy(x: np.ndarray, y: Sequence[Any] | np.ndarray | None = None) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise WorkbenchError(f"expected item vectors of shape [n, dim], found shape {x.shape}")
    if y is not None and len(y) != x.shape[0]:
        raise WorkbenchError(f"{x.shape[0]} vectors but {len(y)} labels; expected one label each")
    return x


class LogisticHead(ClassifierMixin, BaseEstimator):
    """Multiclass logistic regression; class imbalance handled by balanced class weights.

    With one class only (a cold start), it predicts that class with certainty instead of
    failing, so the selection loop can begin before every class has been seen.
    """

    def __init__(
        self,
        C: float = 1.0,
        class_weight: str | dict[Any, float] | None = "balanced",
        max_iter: int = 1000,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> LogisticHead:
        x = _check_xy(X, y)
        labels = np.asarray(y)
        self.classes_ = np.unique(labels)
        self.n_features_in_ = x.shape[1]
        if len(self.classes_) < 2:
            self.model_ = None
            return self
        model = LogisticRegression(
            C=self.C,
            class_weight=self.class_weight,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        previous = getattr(self, "warm_from_", None)
        self.warm_started_ = False
        if (
            previous is not None
            and np.array_equal(previous.classes_, self.classes_)
            and previous.coef_.shape[1] == x.shape[1]
        ):
            # lbfgs starts from the previous round's weights: fewer iterations, same optimum
            # (the objective is convex), so a warm start changes speed, not the model.
            model.set_params(warm_start=True)
            model.coef_ = previous.coef_.copy()
            model.intercept_ = previous.intercept_.copy()
            self.warm_started_ = True
        self.model_ = model.fit(x, labels)
        self.warm_from_ = None  # do not pickle the previous model inside the new one
        return self

    def warm_start_from(self, previous: Any) -> bool:
        """Start the next `fit` from a fitted head's weights when classes and dimension match."""
        inner = getattr(previous, "head", previous)  # a CalibratedHead wraps the head
        model = getattr(inner, "model_", None)
        if isinstance(inner, LogisticHead) and model is not None:
            self.warm_from_ = model
            return True
        return False

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "classes_")
        x = _check_xy(X)
        if self.model_ is None:
            return np.zeros(x.shape[0], dtype=np.float32)
        return self.model_.decision_function(x)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "classes_")
        x = _check_xy(X)
        if self.model_ is None:
            return np.ones((x.shape[0], 1), dtype=np.float64)
        return self.model_.predict_proba(x)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class OneVsRestHead(ClassifierMixin, BaseEstimator):
    """Multi-label: one balanced logistic regression per policy code, each its own yes/no.

    `fit` takes a 0/1 indicator matrix [n, k]; `predict_proba` returns P(code applies) per
    column, in `classes_` order (the column names given, or 0..k-1). The columns are independent
    and need not sum to one.
    """

    def __init__(
        self,
        C: float = 1.0,
        class_names: Sequence[str] | None = None,
        max_iter: int = 1000,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.class_names = class_names
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> OneVsRestHead:
        x = _check_xy(X, y)
        indicator = np.asarray(y)
        if indicator.ndim != 2:
            raise WorkbenchError(
                f"one-vs-rest expects a 0/1 matrix [n, codes], found shape {indicator.shape}"
            )
        k = indicator.shape[1]
        if self.class_names is not None and len(self.class_names) != k:
            raise WorkbenchError(f"{len(self.class_names)} class names for {k} label columns")
        self.classes_ = np.asarray(self.class_names if self.class_names is not None else range(k))
        self.n_features_in_ = x.shape[1]
        self.models_: list[LogisticRegression | float] = []
        for j in range(k):
            column = indicator[:, j].astype(int)
            if column.min() == column.max():
                # A code never (or always) seen: a constant, not a failed fit.
                self.models_.append(float(column[0]) if len(column) else 0.0)
                continue
            self.models_.append(
                LogisticRegression(
                    C=self.C,
                    class_weight="balanced",
                    max_iter=self.max_iter,
                    random_state=self.random_state,
                ).fit(x, column)
            )
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "models_")
        x = _check_xy(X)
        out = np.empty((x.shape[0], len(self.models_)), dtype=np.float64)
        for j, model in enumerate(self.models_):
            out[:, j] = model if isinstance(model, float) else model.predict_proba(x)[:, 1]
        return out

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X) >= 0.5).astype(int)


class MLPHead(ClassifierMixin, BaseEstimator):
    """A small torch MLP (one hidden layer); class imbalance handled by a weighted loss."""

    def __init__(
        self,
        hidden: int = 256,
        epochs: int = 60,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        dropout: float = 0.1,
        balanced: bool = True,
        random_state: int | None = None,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.dropout = dropout
        self.balanced = balanced
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> MLPHead:
        import torch

        x = _check_xy(X, y)
        labels = np.asarray(y)
        self.classes_, codes = np.unique(labels, return_inverse=True)
        self.n_features_in_ = x.shape[1]
        k = len(self.classes_)
        gen = torch.Generator().manual_seed(int(self.random_state or 0))
        torch.manual_seed(int(self.random_state or 0))
        self.net_ = torch.nn.Sequential(
            torch.nn.Linear(x.shape[1], self.hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(self.dropout),
            torch.nn.Linear(self.hidden, max(k, 1)),
        )
        previous = getattr(self, "warm_from_", None)
        self.warm_from_: MLPHead | None = None
        self.warm_started_ = False
        if previous is not None and np.array_equal(previous.classes_, self.classes_):
            shapes = {n: p.shape for n, p in previous.net_.state_dict().items()}
            if shapes == {n: p.shape for n, p in self.net_.state_dict().items()}:
                self.net_.load_state_dict(previous.net_.state_dict())
                self.warm_started_ = True
        if k < 2:
            return self
        counts = np.bincount(codes, minlength=k).astype(np.float32)
        weight = torch.tensor(len(codes) / (k * np.maximum(counts, 1))) if self.balanced else None
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        xt = torch.from_numpy(x)
        yt = torch.from_numpy(codes.astype(np.int64))
        self.net_.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(yt), generator=gen)
            for start in range(0, len(yt), self.batch_size):
                idx = order[start : start + self.batch_size]
                opt.zero_grad()
                loss_fn(self.net_(xt[idx]), yt[idx]).backward()
                opt.step()
        self.net_.eval()
        return self

    def warm_start_from(self, previous: Any) -> bool:
        """Start the next `fit` from a fitted MLP of the same shape and classes."""
        inner = getattr(previous, "head", previous)
        if isinstance(inner, MLPHead) and hasattr(inner, "net_"):
            self.warm_from_ = inner
            return True
        return False

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        import torch

        check_is_fitted(self, "net_")
        x = _check_xy(X)
        if len(self.classes_) < 2:
            return np.ones((x.shape[0], 1), dtype=np.float64)
        with torch.inference_mode():
            logits = self.net_(torch.from_numpy(x))
            return torch.softmax(logits, dim=1).double().numpy()

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def _fit_temperature(proba: np.ndarray, codes: np.ndarray) -> float:
    """The temperature T minimising the negative log-likelihood of softmax(log p / T)."""
    logp = np.log(np.clip(proba, 1e-12, 1.0))

    def nll(log_t: float) -> float:
        z = logp / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        return float(-(z[np.arange(len(codes)), codes] - log_norm).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


class CalibratedHead(ClassifierMixin, BaseEstimator):
    """A fitted head plus calibration learnt only from randomly sampled labelled items.

    Labels chosen by a strategy are biased towards the boundary, so they would skew the
    calibration; the random share of the selection mix is the unbiased sample. Below
    `min_labels` random labels the head stays uncalibrated and `reason` says so.
    """

    def __init__(
        self,
        head: Any,
        method: Literal["temperature", "sigmoid"] = "temperature",
        min_labels: int = MIN_CALIBRATION_LABELS,
    ) -> None:
        self.head = head
        self.method = method
        self.min_labels = min_labels

    def fit(self, X: np.ndarray, y: Sequence[Any] | np.ndarray) -> CalibratedHead:
        """Calibrate on (X, y), which must be the randomly sampled labelled items only."""
        check_is_fitted(self.head, "classes_")
        if self.method not in ("temperature", "sigmoid"):
            raise WorkbenchError(
                f"unknown calibration method {self.method!r}; expected 'temperature' or 'sigmoid'"
            )
        x = _check_xy(X, y)
        labels = np.asarray(y)
        self.classes_ = self.head.classes_
        self.temperature_: float | None = None
        self.calibrator_: Any = None
        known = np.isin(labels, self.classes_)
        n = int(known.sum())
        if n < self.min_labels:
            self.calibrated_ = False
            self.reason_ = f"uncalibrated: {n} randomly sampled labels, {self.min_labels} needed"
            return self
        x, labels = x[known], labels[known]
        if self.method == "temperature":
            codes = np.searchsorted(self.classes_, labels)
            self.temperature_ = _fit_temperature(self.head.predict_proba(x), codes)
            detail = f"temperature {self.temperature_:.2f}"
        else:
            self.calibrator_ = CalibratedClassifierCV(
                FrozenEstimator(self.head), method="sigmoid"
            ).fit(x, labels)
            detail = "sigmoid (Platt) per class"
        self.calibrated_ = True
        self.reason_ = f"calibrated on {n} randomly sampled labels, {detail}"
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "calibrated_")
        if not self.calibrated_:
            return self.head.predict_proba(X)
        if self.calibrator_ is not None:
            return self.calibrator_.predict_proba(X)
        p = self.head.predict_proba(X)
        z = np.log(np.clip(p, 1e-12, 1.0)) / float(self.temperature_ or 1.0)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


HEADS: dict[str, type[BaseEstimator]] = {"logistic": LogisticHead, "mlp": MLPHead}


def make_head(name: str, random_state: int | None = None, **params: Any) -> BaseEstimator:
    """A head by name (`logistic` or `mlp`), seeded."""
    if name not in HEADS:
        raise WorkbenchError(f"unknown head {name!r}; expected one of {', '.join(sorted(HEADS))}")
    return HEADS[name](random_state=random_state, **params)
