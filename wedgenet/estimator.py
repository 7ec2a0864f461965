"""scikit-learn estimators around :func:`wedgenet.solve` (and, with ``depth=3``,
:func:`wedgenet.solve_three_layer`).

Both subclass :class:`sklearn.base.BaseEstimator` (``get_params`` / ``set_params`` /
``clone`` / pipelines / grid search work as for any scikit-learn model) with the matching
mixin (:class:`~sklearn.base.RegressorMixin`: ``score`` is R^2;
:class:`~sklearn.base.ClassifierMixin`: ``score`` is accuracy), validate their input as
scikit-learn does (:func:`sklearn.utils.validation.validate_data`: finite dense arrays,
``n_features_in_``, :class:`~sklearn.exceptions.NotFittedError` before ``fit``) and pass
``sklearn.utils.estimator_checks.parametrize_with_checks`` without exceptions
(``tests/wedgenet/test_estimator.py``, with a sampled dictionary for speed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from wedgenet.exceptions import WedgeNetError
from wedgenet.network import TwoLayerNetwork
from wedgenet.solve import Solver, SolveResult, SourceName, solve
from wedgenet.threelayer.network import ThreeLayerNetwork
from wedgenet.threelayer.solve import ThreeLayerResult, solve_three_layer
from wedgenet.validation import DEFAULT_LAM

FloatArray = NDArray[np.float64]

_PARAMS_DOC = """
    Parameters
    ----------
    lam : float, default 0.01
        Regularization strength: the objective is
        ``L + (lam/2) sum_j (||w_j||_p^2 + ||a_j||^2)`` with the loss summed over samples.
    p : {1, 2}, default 1
        Norm of first-layer weights; ``p = 1`` is exact and certifiable.
    bias : bool, default True
        Biased hidden neurons.
    source : {"auto", "exhaustive", "sample", "search"}, default "auto"
        ``auto`` prices the whole exact dictionary when it has at most ``max_columns``
        columns (certifiable) and finds columns by pricing search otherwise (any dimension;
        never certified, reports a valid loose lower bound and a gap estimate).
    n_columns : int, optional
        Hyperplanes to sample (``source="sample"``) or random extra search starts.
    max_columns : int, default 2_000_000
        Largest dictionary that is enumerated.
    solver : {"auto", "cvxpy", "workingset"}, default "auto"
    tol : float, default 1e-6
        Target relative duality gap.
    max_time : float, optional
        Seconds after which the best network so far is returned (uncertified); default:
        unbounded when the dictionary is scanned, 120 s when it is searched.
    seed : int, default 0
    depth : {2, 3}, default 2
        Layers of the network: 2 (``wedgenet.solve``) or 3 (``wedgenet.solve_three_layer``:
        blocks ``w3 relu(w2 relu(x . w1 + b1) + b2)``, docs/threelayer.md). Depth 3 has one
        output (regression with a 1-D ``y``, binary classification with the logistic or hinge
        loss) and the exact dictionary (``p=1``, ``source`` "auto" or "exhaustive", ``solver``
        "auto" or "workingset"); other combinations are refused when fitting. ``max_columns``
        and ``n_columns`` are not used at depth 3.
"""


class _WedgeNetBase(BaseEstimator):  # type: ignore[misc]
    """Shared parameters and fitted attributes.

    Attributes
    ----------
    result_ : SolveResult or ThreeLayerResult
        Objective, dual bound, gap and certificate of the fit.
    network_ : TwoLayerNetwork or ThreeLayerNetwork
        The fitted network; each neuron (``depth=3``: each block) has its index set and
        formula.
    n_features_in_ : int
    """

    def __init__(
        self,
        lam: float = DEFAULT_LAM,
        *,
        p: int = 1,
        bias: bool = True,
        source: SourceName = "auto",
        n_columns: int | None = None,
        max_columns: int | None = 2_000_000,
        solver: Solver = "auto",
        tol: float = 1e-6,
        max_time: float | None = None,
        seed: int = 0,
        depth: int = 2,
    ) -> None:
        self.lam = lam
        self.p = p
        self.bias = bias
        self.source = source
        self.n_columns = n_columns
        self.max_columns = max_columns
        self.solver = solver
        self.tol = tol
        self.max_time = max_time
        self.seed = seed
        self.depth = depth

    def _check_depth(self) -> int:
        """``depth`` as an int; the options depth 3 does not support are refused."""
        depth = self.depth
        if isinstance(depth, bool) or depth not in (2, 3):
            raise WedgeNetError(f"depth must be 2 or 3, got {depth!r}")
        if depth == 3:
            if self.p != 1:
                raise WedgeNetError(f"depth=3 needs p=1 (the exact three-layer dictionary), "
                                    f"got p={self.p!r}")
            if self.source not in ("auto", "exhaustive"):
                raise WedgeNetError(f"depth=3 scans the whole three-layer dictionary: source "
                                    f"must be 'auto' or 'exhaustive', got {self.source!r}")
            if self.solver not in ("auto", "workingset"):
                raise WedgeNetError(f"depth=3 solves by column generation: solver must be "
                                    f"'auto' or 'workingset', got {self.solver!r}")
        return int(depth)

    def _fit(self, X: Any, y: Any, loss: str) -> None:
        if self._check_depth() == 3:
            if np.ndim(y) > 1 and np.shape(y)[1] != 1:
                raise WedgeNetError(f"depth=3 networks have one output; y has shape "
                                    f"{np.shape(y)}")
            result3 = solve_three_layer(
                X, np.reshape(y, -1) if np.ndim(y) > 1 else y, loss=loss, bias=self.bias,
                lam=self.lam, tol=self.tol, max_time=self.max_time)
            self.result_: SolveResult | ThreeLayerResult = result3
            self.network_: TwoLayerNetwork | ThreeLayerNetwork = result3.network
            return
        result = solve(
            X,
            y,
            loss=loss,
            p=self.p,
            bias=self.bias,
            lam=self.lam,
            source=self.source,
            n_columns=self.n_columns,
            seed=self.seed,
            max_columns=self.max_columns,
            solver=self.solver,
            tol=self.tol,
            max_time=self.max_time,
        )
        self.result_ = result
        self.network_ = result.network

    def _check_fitted(self, X: Any) -> FloatArray:
        check_is_fitted(self, "network_")
        out: FloatArray = validate_data(self, X, reset=False, dtype=np.float64)
        return out

    @property
    def certified_(self) -> bool:
        return self.result_.certified

    @property
    def neurons_(self) -> list[Any]:
        """The hidden neurons (``depth=3``: the blocks)."""
        if isinstance(self.network_, ThreeLayerNetwork):
            return list(self.network_.blocks)
        return self.network_.neurons


class WedgeNetRegressor(RegressorMixin, _WedgeNetBase):  # type: ignore[misc]
    __doc__ = (
        """Two-layer ReLU regression network trained by convex optimization (squared loss).
"""
        + _PARAMS_DOC
        + """
    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0.0, 1.0, 0.0, 1.0])
    >>> model = WedgeNetRegressor(lam=0.01).fit(X, y)
    >>> model.result_.certified
    True
    """
    )

    def fit(self, X: Any, y: Any) -> WedgeNetRegressor:
        """Solve the convex program for ``(X, y)``; ``y`` of shape (n,) or (n, k)."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        self._fit(X, y, "squared")
        return self

    def predict(self, X: Any) -> FloatArray:
        """Network outputs, shape (n,) (or (n, k) for a 2-D ``y``)."""
        X = self._check_fitted(X)
        return self.network_.decision_function(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class WedgeNetClassifier(ClassifierMixin, _WedgeNetBase):  # type: ignore[misc]
    __doc__ = (
        """Two-layer ReLU classifier trained by convex optimization.
"""
        + _PARAMS_DOC
        + """    loss : {"auto", "logistic", "hinge", "softmax"}, default "auto"
        ``auto``: logistic for two classes, softmax for more. The binary losses need two
        classes; ``softmax`` handles any number (vector output, group norm as in Thm 14).
        ``depth=3``: two classes only (logistic or hinge).

    Attributes
    ----------
    classes_ : ndarray
        The class labels, sorted.
    loss_ : str
        The loss that was used (``auto`` resolved).
    """
    )

    def __init__(
        self,
        lam: float = DEFAULT_LAM,
        *,
        loss: str = "auto",
        p: int = 1,
        bias: bool = True,
        source: SourceName = "auto",
        n_columns: int | None = None,
        max_columns: int | None = 2_000_000,
        solver: Solver = "auto",
        tol: float = 1e-6,
        max_time: float | None = None,
        seed: int = 0,
        depth: int = 2,
    ) -> None:
        super().__init__(
            lam,
            p=p,
            bias=bias,
            source=source,
            n_columns=n_columns,
            max_columns=max_columns,
            solver=solver,
            tol=tol,
            max_time=max_time,
            seed=seed,
            depth=depth,
        )
        self.loss = loss

    def fit(self, X: Any, y: Any) -> WedgeNetClassifier:
        """Solve the convex program for ``(X, y)``; ``y`` holds class labels."""
        if self.loss not in ("auto", "logistic", "hinge", "softmax"):
            raise WedgeNetError(
                f"classifier loss must be auto, logistic, hinge or softmax, got {self.loss!r}"
            )
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        n_classes = np.unique(y).size
        if n_classes < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, "
                f"but the data contain only one class: {np.unique(y)[0]!r}"
            )
        loss = self.loss if self.loss != "auto" else ("logistic" if n_classes == 2 else "softmax")
        if self._check_depth() == 3 and (loss == "softmax" or n_classes > 2):
            raise WedgeNetError(
                f"depth=3 networks have one output: binary classification only (logistic or "
                f"hinge loss, 2 classes); got loss={loss!r} with {n_classes} classes"
            )
        if loss != "softmax" and n_classes > 2:
            raise WedgeNetError(
                f"the {loss} loss handles 2 classes, got {n_classes}; use loss='softmax' "
                "(or 'auto')"
            )
        self._fit(X, y, loss)
        assert self.result_.classes is not None
        self.classes_ = self.result_.classes
        self.loss_ = loss
        return self

    def decision_function(self, X: Any) -> FloatArray:
        """Network outputs: shape (n,) for two classes (positive: ``classes_[1]``), else
        (n, n_classes)."""
        X = self._check_fitted(X)
        return self.network_.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def _has_probabilities(self) -> bool:
        # before fit the loss may still be "auto": probabilities then depend on what it becomes
        return getattr(self, "loss_", self.loss) in ("auto", "logistic", "softmax")

    @available_if(_has_probabilities)
    def predict_proba(self, X: Any) -> FloatArray:
        """Class probabilities of the fitted model (logistic: sigmoid; softmax), shape
        (n, n_classes), columns in the order of ``classes_``. Not available for hinge."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p1 = expit(scores)
            return np.column_stack([1.0 - p1, p1])
        return np.asarray(softmax(scores, axis=1))

    @available_if(_has_probabilities)
    def predict_log_proba(self, X: Any) -> FloatArray:
        return np.log(self.predict_proba(X))

