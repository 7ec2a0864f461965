"""scikit-learn conformance of the estimators: the library's own estimator checks, and the
tools people combine them with (Pipeline, GridSearchCV, cross_val_score)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_classification
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from wedgenet.estimator import WedgeNetClassifier, WedgeNetRegressor

#: Fast settings: a random sample of hyperplanes instead of the exact dictionary (the checks
#: fit dozens of times on up to 300 samples).
FAST = {"source": "sample", "n_columns": 200, "lam": 0.1}


@parametrize_with_checks(
    [WedgeNetRegressor(**FAST), WedgeNetClassifier(**FAST)]  # type: ignore[arg-type]
)
def test_sklearn_estimator_checks(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def test_classifier_handles_many_classes_by_default_with_probabilities() -> None:
    X, y = load_iris(return_X_y=True)
    clf = WedgeNetClassifier(**FAST).fit(X, y)  # type: ignore[arg-type]
    assert clf.loss_ == "softmax"
    assert list(clf.classes_) == [0, 1, 2]
    proba = clf.predict_proba(X)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(clf.classes_[np.argmax(proba, axis=1)], clf.predict(X))
    assert clf.score(X, y) > 0.9


def test_binary_probabilities_follow_the_decision_function() -> None:
    X, y = make_classification(n_samples=120, n_features=4, random_state=0)
    labels = np.where(y == 1, "yes", "no")
    clf = WedgeNetClassifier(**FAST).fit(X, labels)  # type: ignore[arg-type]
    assert clf.loss_ == "logistic"
    proba = clf.predict_proba(X)
    scores = clf.decision_function(X)
    np.testing.assert_allclose(proba[:, 1], 1.0 / (1.0 + np.exp(-scores)), rtol=1e-12)
    assert np.array_equal(clf.predict(X), np.where(scores > 0, "yes", "no"))


def test_hinge_has_no_probabilities_and_binary_losses_refuse_three_classes() -> None:
    X, y = make_classification(n_samples=80, n_features=3, n_informative=3, n_redundant=0,
                               random_state=1)
    hinge = WedgeNetClassifier(loss="hinge", **FAST).fit(X, y)  # type: ignore[arg-type]
    assert not hasattr(hinge, "predict_proba")
    X3, y3 = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="loss='softmax'"):
        WedgeNetClassifier(loss="logistic", **FAST).fit(X3, y3)  # type: ignore[arg-type]


def test_not_fitted_and_bad_input_errors_are_scikit_learns() -> None:
    with pytest.raises(NotFittedError):
        WedgeNetRegressor().predict(np.zeros((2, 2)))
    X = np.array([[0.0, 1.0], [1.0, 0.0], [np.nan, 1.0]])
    with pytest.raises(ValueError, match="NaN"):
        WedgeNetRegressor(**FAST).fit(X, [0.0, 1.0, 2.0])  # type: ignore[arg-type]
    model = WedgeNetRegressor(**FAST).fit(X[:2], [0.0, 1.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((1, 3)))


def test_pipeline_grid_search_and_cross_validation() -> None:
    X, y = make_classification(n_samples=90, n_features=5, random_state=2)
    pipe = make_pipeline(StandardScaler(), WedgeNetClassifier(**FAST))  # type: ignore[arg-type]
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.6)
    grid = GridSearchCV(pipe, {"wedgenetclassifier__lam": [0.05, 1.0]}, cv=3).fit(X, y)
    assert grid.best_params_["wedgenetclassifier__lam"] in (0.05, 1.0)
    assert grid.best_estimator_.predict(X).shape == (90,)


def test_regressor_is_certified_on_the_exact_dictionary_and_supports_several_outputs() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    Y = np.column_stack([np.abs(X[:, 0]), X[:, 1] ** 2])
    model = WedgeNetRegressor(lam=0.05).fit(X, Y)
    assert model.certified_
    assert model.predict(X).shape == (20, 2)
    one = WedgeNetRegressor(lam=0.05).fit(X, Y[:, 0])
    assert one.certified_ and one.predict(X).shape == (20,)
