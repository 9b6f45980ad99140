"""Classifier heads: scikit-learn API, imbalance, unsure labels, calibration on random labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from workbench.errors import WorkbenchError
from workbench.services.train.heads import (
    CalibratedHead,
    LogisticHead,
    MLPHead,
    OneVsRestHead,
    trainable,
)


def blobs(n: int = 600, seed: int = 0, rare: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = {"none": (0.0, 0.0), "hate": (2.0, 2.0), "spam": (-2.0, 2.0)}
    labels = rng.choice(list(centres), size=n, p=[0.95 - rare, rare, 0.05])
    x = np.array([centres[lab] for lab in labels]) + rng.normal(scale=0.7, size=(n, 2))
    return x.astype(np.float32), labels


@pytest.mark.parametrize(
    "make", [lambda: LogisticHead(random_state=0), lambda: MLPHead(epochs=30, random_state=0)]
)
def test_head_follows_sklearn_api_with_one_column_per_class(make) -> None:  # type: ignore[no-untyped-def]
    x, y = blobs()
    head = make()
    assert head.fit(x, y) is head
    assert list(head.classes_) == ["hate", "none", "spam"]
    p = head.predict_proba(x)
    assert p.shape == (len(x), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert (head.predict(x) == y).mean() > 0.85
    # clone() works only when the constructor stores its parameters untouched.
    assert clone(head).get_params() == head.get_params()


def test_balanced_logistic_head_recalls_a_rare_class_better_than_unweighted() -> None:
    x, y = blobs(n=2000, rare=0.02, seed=1)
    xt, yt = blobs(n=4000, rare=0.02, seed=2)
    balanced = LogisticHead(random_state=0).fit(x, y)
    plain = LogisticHead(class_weight=None, random_state=0).fit(x, y)
    recall = {
        name: (h.predict(xt)[yt == "hate"] == "hate").mean()
        for name, h in [("balanced", balanced), ("plain", plain)]
    }
    assert recall["balanced"] >= recall["plain"]
    assert recall["balanced"] > 0.8


def test_mlp_head_is_repeatable_with_the_same_random_state() -> None:
    x, y = blobs()
    a = MLPHead(epochs=5, random_state=3).fit(x, y).predict_proba(x)
    b = MLPHead(epochs=5, random_state=3).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(a, b)


def test_one_vs_rest_head_gives_an_independent_probability_per_policy() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0.5, np.zeros(400, bool)], axis=1).astype(int)
    head = OneVsRestHead(class_names=["hate", "spam", "csam"], random_state=0).fit(x, y)
    p = head.predict_proba(x)
    assert p.shape == (400, 3)
    assert list(head.classes_) == ["hate", "spam", "csam"]
    assert ((p[:, 0] > 0.5) == (x[:, 0] > 0)).mean() > 0.95
    # A code never seen positive is a constant zero, not a failed fit.
    assert (p[:, 2] == 0).all()


def test_unsure_labels_are_left_out_of_training() -> None:
    labels = np.array(["hate", "unsure", "none", None, "unsure"], dtype=object)
    assert trainable(labels).tolist() == [True, False, True, False, False]


def test_calibration_is_refused_below_fifty_random_labels() -> None:
    x, y = blobs()
    head = LogisticHead(random_state=0).fit(x[:300], y[:300])
    cal = CalibratedHead(head).fit(x[300:349], y[300:349])
    assert cal.calibrated_ is False
    assert "49 randomly sampled labels, 50 needed" in cal.reason_
    np.testing.assert_allclose(cal.predict_proba(x), head.predict_proba(x))


class _OverconfidentHead(ClassifierMixin, BaseEstimator):
    """Probabilities softmax(3 z) where softmax(z) is the truth: temperature 3 undoes it."""

    classes_ = np.array([0, 1, 2])

    def __init__(self, w: np.ndarray | None = None) -> None:
        self.w = w

    def fit(self, x: np.ndarray, y: np.ndarray) -> _OverconfidentHead:
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = 3.0 * (x @ self.w)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def test_temperature_calibration_recovers_a_known_overconfidence() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3))
    x = rng.normal(size=(5000, 4)).astype(np.float32)
    z = x @ w
    true_p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(3, p=p) for p in true_p])
    cal = CalibratedHead(_OverconfidentHead(w)).fit(x, y)
    assert cal.calibrated_ and "temperature" in cal.reason_
    assert cal.temperature_ == pytest.approx(3.0, rel=0.1)
    np.testing.assert_allclose(cal.predict_proba(x[:50]), true_p[:50], atol=0.05)


def test_sigmoid_calibration_matches_sklearn_on_a_frozen_head() -> None:
    x, y = blobs(n=800, rare=0.2)
    head = LogisticHead(random_state=0).fit(x[:300], y[:300])
    cal = CalibratedHead(head, method="sigmoid").fit(x[300:600], y[300:600])
    ref = CalibratedClassifierCV(FrozenEstimator(head), method="sigmoid").fit(
        x[300:600], y[300:600]
    )
    np.testing.assert_allclose(cal.predict_proba(x[600:]), ref.predict_proba(x[600:]))


def test_logistic_head_with_one_class_predicts_it_instead_of_failing() -> None:
    x = np.zeros((5, 2), np.float32)
    head = LogisticHead().fit(x, ["none"] * 5)
    assert head.predict_proba(x).shape == (5, 1)
    assert head.predict(x).tolist() == ["none"] * 5


def test_head_rejects_mismatched_vectors_and_labels() -> None:
    with pytest.raises(WorkbenchError, match="3 vectors but 2 labels"):
        LogisticHead().fit(np.zeros((3, 2)), ["a", "b"])


@pytest.mark.parametrize("name", ["logistic", "mlp"])
def test_warm_start_begins_from_the_previous_weights_when_classes_match(name: str) -> None:
    from workbench.services.train.heads import CalibratedHead, make_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = np.where(x[:, 0] > 0.3, "hate", np.where(x[:, 1] > 0, "spam", "none"))
    params = {"epochs": 5} if name == "mlp" else {}
    first = make_head(name, random_state=0, **params).fit(x[:150], y[:150])
    wrapped = CalibratedHead(first).fit(x[150:170], y[150:170])
    second = make_head(name, random_state=0, **params)
    assert second.warm_start_from(wrapped)
    second.fit(x, y)
    assert second.warm_started_
    assert not hasattr(second, "warm_from_") or second.warm_from_ is None  # not pickled along
    # Different classes: a cold start, silently.
    third = make_head(name, random_state=0, **params)
    third.warm_start_from(first)
    third.fit(x, np.where(y == "spam", "none", y))
    assert not third.warm_started_
    if name == "logistic":
        # Convex objective: the warm start reaches the same model as a cold fit (to within
        # lbfgs's stopping tolerance).
        cold = make_head(name, random_state=0).fit(x, y)
        np.testing.assert_allclose(second.predict_proba(x), cold.predict_proba(x), atol=5e-3)


def _three_classes(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, np.where(x[:, 0] > 0.3, "hate", np.where(x[:, 1] > 0, "spam", "none"))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_warm_started_logistic_head_keeps_the_previous_weights_after_one_iteration() -> None:
    from workbench.services.train.heads import make_head

    x, y = _three_classes()
    parent = make_head("logistic", random_state=0).fit(x, y)
    # One lbfgs iteration cannot get from zeros to the optimum, so only a real warm start
    # ends (next to) the parent's weights.
    warm = make_head("logistic", random_state=0, max_iter=1)
    assert warm.warm_start_from(CalibratedHead(parent).fit(x[:10], y[:10]))
    warm.fit(x, y)
    cold = make_head("logistic", random_state=0, max_iter=1).fit(x, y)
    np.testing.assert_allclose(warm.model_.coef_, parent.model_.coef_, atol=1e-3)
    np.testing.assert_allclose(warm.model_.intercept_, parent.model_.intercept_, atol=1e-3)
    assert np.abs(cold.model_.coef_ - parent.model_.coef_).max() > 0.5
    # From the parent's optimum on the same data, lbfgs has nothing left to do.
    again = make_head("logistic", random_state=0)
    again.warm_start_from(parent)
    assert int(again.fit(x, y).model_.n_iter_.max()) < int(parent.model_.n_iter_.max())


def test_a_warm_started_mlp_head_trained_for_no_epochs_predicts_as_its_parent() -> None:
    from workbench.services.train.heads import make_head

    x, y = _three_classes()
    parent = make_head("mlp", random_state=0, epochs=5).fit(x[:150], y[:150])
    # A different seed: without the parent's weights, the net would start elsewhere.
    warm = make_head("mlp", random_state=1, epochs=0)
    assert warm.warm_start_from(parent)
    warm.fit(x[:150], y[:150])
    cold = make_head("mlp", random_state=1, epochs=0).fit(x[:150], y[:150])
    np.testing.assert_allclose(warm.predict_proba(x), parent.predict_proba(x), atol=1e-6)
    assert np.abs(cold.predict_proba(x) - parent.predict_proba(x)).max() > 0.05
