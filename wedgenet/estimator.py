"""scikit-learn estimators around :func:`wedgenet.solve`.

Both subclass :class:`sklearn.base.BaseEstimator` (``get_params`` / ``set_params`` /
``clone`` / pipelines / grid search work as for any scikit-learn model) with the matching
mixin (:class:`~sklearn.base.RegressorMixin`: ``score`` is R^2;
:class:`~sklearn.base.ClassifierMixin`: ``score`` is accuracy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from wedgenet.exceptions import WedgeNetError
from wedgenet.network import TwoLayerNetwork
from wedgenet.solve import Solver, SolveResult, SourceName, solve
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
"""


class _WedgeNetBase(BaseEstimator):  # type: ignore[misc]
    """Shared parameters and fitted attributes.

    Attributes
    ----------
    result_ : SolveResult
        Objective, dual bound, gap and certificate of the fit.
    network_ : TwoLayerNetwork
        The fitted network; each neuron has its index set and formula.
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

    def _fit(self, X: Any, y: Any, loss: str) -> None:
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
        self.result_: SolveResult = result
        self.network_: TwoLayerNetwork = result.network
        self.n_features_in_ = result.network.n_features

    def _check_fitted(self, X: Any) -> FloatArray:
        if not hasattr(self, "network_"):
            raise WedgeNetError(f"this {type(self).__name__} is not fitted yet; call fit(X, y)")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise WedgeNetError(f"X must have shape (n, {self.n_features_in_}), got {X.shape}")
        return X

    @property
    def certified_(self) -> bool:
        return self.result_.certified

    @property
    def neurons_(self) -> list[Any]:
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
        self._fit(X, y, "squared")
        return self

    def predict(self, X: Any) -> FloatArray:
        X = self._check_fitted(X)
        return self.network_.decision_function(X)


class WedgeNetClassifier(ClassifierMixin, _WedgeNetBase):  # type: ignore[misc]
    __doc__ = (
        """Two-layer ReLU classifier trained by convex optimization.
"""
        + _PARAMS_DOC
        + """    loss : {"logistic", "hinge", "softmax"}, default "logistic"
        Binary losses need two classes; ``softmax`` handles any number (vector output,
        group norm as in Thm 14).
    """
    )

    def __init__(
        self,
        lam: float = DEFAULT_LAM,
        *,
        loss: str = "logistic",
        p: int = 1,
        bias: bool = True,
        source: SourceName = "auto",
        n_columns: int | None = None,
        max_columns: int | None = 2_000_000,
        solver: Solver = "auto",
        tol: float = 1e-6,
        max_time: float | None = None,
        seed: int = 0,
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
        )
        self.loss = loss

    def fit(self, X: Any, y: Any) -> WedgeNetClassifier:
        if self.loss not in ("logistic", "hinge", "softmax"):
            raise WedgeNetError(
                f"classifier loss must be logistic, hinge or softmax, got {self.loss!r}"
            )
        self._fit(X, y, self.loss)
        assert self.result_.classes is not None
        self.classes_ = self.result_.classes
        return self

    def decision_function(self, X: Any) -> FloatArray:
        X = self._check_fitted(X)
        return self.network_.decision_function(X)

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]
