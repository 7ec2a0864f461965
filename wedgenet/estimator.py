"""scikit-learn style estimators around :func:`wedgenet.solve`."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError
from wedgenet.network import TwoLayerNetwork
from wedgenet.solve import Solver, SolveResult, solve

FloatArray = NDArray[np.float64]


class _WedgeNetBase:
    """Shared parameters and fitted attributes.

    Parameters
    ----------
    lam : float, default 0.01
        Regularization strength (objective ``L + (lam/2) sum ||w_j||_p^2 + ||a_j||^2``).
    p : {1, 2}, default 1
        Norm of first-layer weights; ``p = 1`` is exact and certifiable.
    bias : bool, default True
        Biased hidden neurons.
    source : {"exhaustive", "sample"}, default "exhaustive"
    n_columns : int, optional
        Hyperplanes to sample when ``source="sample"``.
    max_columns : int, default 2_000_000
        Refuse larger exhaustive dictionaries.
    solver : {"auto", "cvxpy", "workingset"}, default "auto"
    tol : float, default 1e-6
        Target relative duality gap.
    seed : int, default 0

    Attributes
    ----------
    result_ : SolveResult
        Objective, dual bound, gap and certificate of the fit.
    network_ : TwoLayerNetwork
        The fitted network; each neuron has its index set and formula.
    n_features_in_ : int
    """

    _loss: str = "squared"

    def __init__(
        self,
        lam: float = 0.01,
        *,
        p: int = 1,
        bias: bool = True,
        source: Literal["exhaustive", "sample"] = "exhaustive",
        n_columns: int | None = None,
        max_columns: int | None = 2_000_000,
        solver: Solver = "auto",
        tol: float = 1e-6,
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
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "lam",
                "p",
                "bias",
                "source",
                "n_columns",
                "max_columns",
                "solver",
                "tol",
                "seed",
            )
        }

    def set_params(self, **params: Any) -> _WedgeNetBase:
        for k, v in params.items():
            if k not in self.get_params():
                raise WedgeNetError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

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


class WedgeNetRegressor(_WedgeNetBase):
    """Two-layer ReLU regression network trained by convex optimization (squared loss).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); y = np.array([0.0, 1.0, 0.0, 1.0])
    >>> model = WedgeNetRegressor(lam=0.01).fit(X, y)
    >>> model.result_.certified
    True
    """

    def fit(self, X: Any, y: Any) -> WedgeNetRegressor:
        self._fit(X, y, "squared")
        return self

    def predict(self, X: Any) -> FloatArray:
        X = self._check_fitted(X)
        return self.network_.decision_function(X)

    def score(self, X: Any, y: Any) -> float:
        """Coefficient of determination R^2."""
        y = np.asarray(y, dtype=float)
        pred = self.predict(X).reshape(y.shape)
        ss_res = float(np.sum((y - pred) ** 2))
        ss_tot = float(np.sum((y - y.mean(axis=0)) ** 2))
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0


class WedgeNetClassifier(_WedgeNetBase):
    """Two-layer ReLU classifier trained by convex optimization.

    Parameters
    ----------
    loss : {"logistic", "hinge", "softmax"}, default "logistic"
        Binary losses need two classes; ``softmax`` handles any number (vector output,
        group norm as in Thm 14).
    **kwargs
        As for :class:`WedgeNetRegressor`.
    """

    def __init__(self, lam: float = 0.01, *, loss: str = "logistic", **kwargs: Any) -> None:
        super().__init__(lam, **kwargs)
        self.loss = loss

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {**super().get_params(deep), "loss": self.loss}

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

    def score(self, X: Any, y: Any) -> float:
        """Accuracy."""
        return float(np.mean(self.predict(X) == np.asarray(y)))
