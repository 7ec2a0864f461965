"""Losses of the convex programs, with gradients and convex conjugates.

Each loss is *summed* over samples (docs/conventions.md section 2). For a prediction matrix
``U`` of shape (n, c) and targets ``Y`` (encoded by :meth:`Loss.encode`), a loss provides its
value, its gradient, the dual objective ``-L*(-V)`` used for lower bounds, and a cvxpy
expression.

=========  ============================================  ===========================
loss       L(U, Y)                                        dual point V = -grad L
=========  ============================================  ===========================
squared    0.5 * ||U - Y||_F^2                            Y - U
logistic   sum log(1 + exp(-y u)),  y in {-1, +1}         y * sigmoid(-y u)
hinge      sum max(0, 1 - y u),     y in {-1, +1}         y * theta, theta in [0, 1]
softmax    sum logsumexp(U_i) - <U_i, Y_i>, Y one-hot     Y - softmax(U)
=========  ============================================  ===========================
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, log_expit, logsumexp, xlogy

from wedgenet.exceptions import WedgeNetError

FloatArray = NDArray[np.float64]


class Loss:
    """Base class; ``U``, ``Y`` and ``V`` are always 2-D arrays of shape (n, c)."""

    name: ClassVar[str] = ""
    #: Differentiable (Newton steps, proximal gradient and the exact offset refit apply).
    smooth: ClassVar[bool] = True
    #: Quadratic in ``U`` with identity Hessian: the free output bias is eliminated by
    #: centring, and the dual point of an optimal bias sums to zero exactly.
    quadratic: ClassVar[bool] = False
    #: Invariant to adding the same number to every output of a sample (softmax): the
    #: outputs are identified up to a common shift, and at least two are needed.
    shift_invariant: ClassVar[bool] = False
    classification: ClassVar[bool] = False
    #: Lipschitz constant of ``grad L`` per sample (step size of proximal gradient).
    curvature: ClassVar[float] = 1.0

    def encode(self, y: Any) -> tuple[FloatArray, np.ndarray | None]:
        """Targets as an (n, c) float matrix, and the class labels (classification)."""
        raise NotImplementedError

    def value(self, U: FloatArray, Y: FloatArray) -> float:
        raise NotImplementedError

    def grad(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        raise NotImplementedError

    def dual_value(self, V: FloatArray, Y: FloatArray) -> float:
        """``-L*(-V)``; ``-inf`` outside the conjugate's domain."""
        raise NotImplementedError

    def best_scale(self, V: FloatArray, Y: FloatArray, s_max: float) -> float:
        """A scale ``s`` in ``(0, s_max]`` for the dual point ``s V`` (default ``s_max``)."""
        return s_max

    def cvxpy(self, U: Any, Y: FloatArray) -> Any:
        raise NotImplementedError

    def cvxpy_program(self, U: Any, Y: FloatArray) -> tuple[Any, list[Any], Any]:
        """``(objective term, constraints, margin constraint or None)`` for cvxpy.

        A loss whose dual point is read off constraint multipliers (hinge: the margins)
        returns an epigraph form and that constraint; :meth:`dual_from_multipliers` maps its
        multipliers to ``V``.
        """
        return self.cvxpy(U, Y), [], None

    def dual_from_multipliers(self, mult: FloatArray, Y: FloatArray, center: bool) -> FloatArray:
        """The dual point ``V`` from the multipliers of :meth:`cvxpy_program`'s margin."""
        raise NotImplementedError

    def hessian(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        """Per-sample Hessians ``d^2 L / dU_i^2``, shape (n, c, c) (smooth losses)."""
        raise NotImplementedError

    def feasible_dual(self, V: FloatArray, Y: FloatArray, center: bool) -> FloatArray:
        """Move a candidate dual point into the set where ``-L*(-V)`` is finite.

        ``center`` (free output bias): also make ``1^T V = 0``. Any result gives a valid
        lower bound once scaled into the dictionary's constraints.
        """
        return V - V.mean(axis=0) if center else V

    def decode(self, Y: FloatArray) -> np.ndarray:
        """Encoded targets back to ``y``: integer class positions for classification."""
        if Y.shape[1] == 1 and self.classification:
            return (Y[:, 0] > 0).astype(np.int64)
        if self.classification:
            return np.argmax(Y, axis=1).astype(np.int64)
        return Y

    def encode_like(self, y: Any, classes: np.ndarray | None) -> FloatArray:
        """Encode further targets (e.g. validation labels) with the training classes."""
        if not self.classification:
            return self.encode(y)[0]
        assert classes is not None
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise WedgeNetError(f"labels must be 1-D, got shape {y.shape}")
        unknown = np.setdiff1d(np.unique(y), classes)
        if unknown.size:
            raise WedgeNetError(
                f"labels {unknown.tolist()[:5]} do not occur in the training labels "
                f"{classes.tolist()}"
            )
        return self._encode_classes(np.searchsorted(classes, y), classes.size)

    def _encode_classes(self, pos: NDArray[np.int64], n_classes: int) -> FloatArray:
        return np.where(pos == 1, 1.0, -1.0)[:, None]

    def metrics(self, U: FloatArray, Y: FloatArray) -> dict[str, float]:
        """Mean loss, and accuracy (classification) or mean squared error (regression)."""
        n = max(U.shape[0], 1)
        out = {"loss": self.value(U, Y) / n}
        if not self.classification:
            out["mse"] = float(np.mean((U - Y) ** 2))
        elif Y.shape[1] == 1:
            out["accuracy"] = float(np.mean(np.where(U[:, 0] > 0, 1.0, -1.0) == Y[:, 0]))
        else:
            out["accuracy"] = float(np.mean(np.argmax(U, axis=1) == np.argmax(Y, axis=1)))
        return out

    def optimal_offset(self, U: FloatArray, Y: FloatArray, t0: FloatArray) -> FloatArray:
        """The output bias minimizing ``L(U + 1 t, Y)`` (Newton from ``t0``).

        Scalar output: safeguarded Newton inside a bracket of the (monotone) derivative, so
        that vanishing curvature (every sample far from the boundary) cannot throw the offset
        to infinity. Vector output: damped Newton.
        """
        t = np.array(t0, dtype=float).reshape(-1)
        if t.size == 1:
            return np.array([self._offset_1d(U, Y, float(t[0]))])
        for _ in range(50):
            G = self.grad(U + t, Y).sum(axis=0)
            if np.max(np.abs(G)) <= 1e-13 * max(1.0, U.shape[0]):
                break
            H = self._offset_hessian(U + t, Y)
            step = np.linalg.lstsq(H, G, rcond=None)[0]
            # Damped Newton: halve until the loss does not increase.
            f0 = self.value(U + t, Y)
            alpha = 1.0
            while alpha > 1e-10 and self.value(U + t - alpha * step, Y) > f0 + 1e-15 * abs(f0):
                alpha *= 0.5
            if alpha <= 1e-10:
                break
            t = t - alpha * step
            if alpha * np.max(np.abs(step)) < 1e-15 * (1 + np.max(np.abs(t))):
                break
        return t

    def _offset_1d(self, U: FloatArray, Y: FloatArray, t: float) -> float:
        def slope(x: float) -> float:
            return float(self.grad(U + x, Y).sum())

        tol = 1e-13 * max(1.0, U.shape[0])
        g = slope(t)
        if abs(g) <= tol:
            return t
        # Bracket the root of the increasing derivative, expanding geometrically.
        lo, hi, width = t, t, 1.0
        for _ in range(2000):
            if g > 0:
                lo = t - width
                if slope(lo) <= 0:
                    break
                hi = lo
            else:
                hi = t + width
                if slope(hi) >= 0:
                    break
                lo = hi
            width *= 2.0
        else:  # pragma: no cover - the derivative of a two-class loss changes sign
            return t
        for _ in range(200):
            H = float(self._offset_hessian(U + t, Y)[0, 0])
            x = t - g / H if H > 1e-300 else np.nan
            if not lo < x < hi:
                x = 0.5 * (lo + hi)  # Newton left the bracket: bisect
            t, g = x, slope(x)
            if abs(g) <= tol or hi - lo <= 4e-16 * max(1.0, abs(t)):
                break
            if g > 0:
                hi = t
            else:
                lo = t
        return t

    def _offset_hessian(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        raise NotImplementedError


class SquaredLoss(Loss):
    name = "squared"
    quadratic = True

    def encode(self, y: Any) -> tuple[FloatArray, None]:
        Y = np.asarray(y, dtype=float)
        if Y.ndim == 1:
            Y = Y[:, None]
        if Y.ndim != 2:
            raise WedgeNetError(f"y must be 1-D or 2-D for the squared loss, got shape {Y.shape}")
        return Y, None

    def value(self, U: FloatArray, Y: FloatArray) -> float:
        return 0.5 * float(np.sum((U - Y) ** 2))

    def grad(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        return U - Y

    def dual_value(self, V: FloatArray, Y: FloatArray) -> float:
        return float(-0.5 * np.sum(V * V) + np.sum(V * Y))

    def best_scale(self, V: FloatArray, Y: FloatArray, s_max: float) -> float:
        vv = float(np.sum(V * V))
        if vv == 0.0:
            return s_max
        return float(np.clip(np.sum(V * Y) / vv, 0.0, s_max)) or s_max

    def cvxpy(self, U: Any, Y: FloatArray) -> Any:
        import cvxpy as cp

        return 0.5 * cp.sum_squares(U - Y)

    def optimal_offset(self, U: FloatArray, Y: FloatArray, t0: FloatArray) -> FloatArray:
        return np.asarray((Y - U).mean(axis=0), dtype=float)

    def hessian(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        n, c = U.shape
        return np.broadcast_to(np.eye(c), (n, c, c))


def _binary_labels(y: Any) -> tuple[FloatArray, np.ndarray]:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise WedgeNetError(f"y must be 1-D class labels for a binary loss, got shape {y.shape}")
    classes = np.unique(y)
    if classes.size != 2:
        raise WedgeNetError(
            f"binary classification needs exactly 2 distinct labels in y, got {classes.size}"
        )
    return np.where(y == classes[1], 1.0, -1.0)[:, None], classes


def balance_dual(V: FloatArray, Y: FloatArray) -> FloatArray:
    """Make ``1^T V = 0`` (free output bias) without leaving ``theta = V * Y`` in [0, 1]:
    shrink the larger class side of each column."""
    out = V.copy()
    for col in range(V.shape[1]):
        v = out[:, col]
        pos, neg = v[v > 0].sum(), -v[v < 0].sum()
        if pos > neg and pos > 0:
            v[v > 0] *= neg / pos
        elif neg > pos and neg > 0:
            v[v < 0] *= pos / neg
    return out


class _BinaryLoss(Loss):
    """Two classes encoded as ``y in {-1, +1}``; the dual point is ``V = y theta``."""

    classification = True

    def encode(self, y: Any) -> tuple[FloatArray, np.ndarray]:
        return _binary_labels(y)

    def feasible_dual(self, V: FloatArray, Y: FloatArray, center: bool) -> FloatArray:
        out = Y * np.clip(V * Y, 0.0, 1.0)
        return balance_dual(out, Y) if center else out


class LogisticLoss(_BinaryLoss):
    name = "logistic"
    curvature = 0.25

    def value(self, U: FloatArray, Y: FloatArray) -> float:
        return float(-np.sum(log_expit(Y * U)))

    def grad(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        return np.asarray(-Y * expit(-Y * U))

    def dual_value(self, V: FloatArray, Y: FloatArray) -> float:
        theta = V * Y
        if np.any(theta < -1e-12) or np.any(theta > 1 + 1e-12):
            return -np.inf
        theta = np.clip(theta, 0.0, 1.0)
        return float(-np.sum(xlogy(theta, theta) + xlogy(1 - theta, 1 - theta)))

    def cvxpy(self, U: Any, Y: FloatArray) -> Any:
        import cvxpy as cp

        return cp.sum(cp.logistic(-cp.multiply(Y, U)))

    def _offset_hessian(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        s = expit(U)
        return np.array([[float(np.sum(s * (1 - s)))]]) + 1e-300

    def hessian(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        s = expit(U[:, 0])
        return (s * (1 - s))[:, None, None]


class HingeLoss(_BinaryLoss):
    name = "hinge"
    smooth = False
    curvature = float("inf")

    def value(self, U: FloatArray, Y: FloatArray) -> float:
        return float(np.sum(np.maximum(0.0, 1.0 - Y * U)))

    def grad(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        # A subgradient: -y where the margin is violated, 0 elsewhere.
        return np.asarray(-Y * (Y * U < 1.0))

    def dual_value(self, V: FloatArray, Y: FloatArray) -> float:
        theta = V * Y
        if np.any(theta < -1e-9) or np.any(theta > 1 + 1e-9):
            return -np.inf
        return float(np.sum(np.clip(theta, 0.0, 1.0)))

    def cvxpy(self, U: Any, Y: FloatArray) -> Any:
        import cvxpy as cp

        return cp.sum(cp.pos(1 - cp.multiply(Y, U)))

    def cvxpy_program(self, U: Any, Y: FloatArray) -> tuple[Any, list[Any], Any]:
        """Epigraph form: the margin multipliers are ``theta`` (``V = y theta``)."""
        import cvxpy as cp

        xi = cp.Variable(U.shape)
        margin = xi >= 1 - cp.multiply(Y, U)
        return cp.sum(xi), [margin, xi >= 0], margin

    def dual_from_multipliers(self, mult: FloatArray, Y: FloatArray, center: bool) -> FloatArray:
        return self.feasible_dual(Y * np.clip(mult, 0.0, 1.0), Y, center)


class SoftmaxLoss(Loss):
    name = "softmax"
    classification = True
    shift_invariant = True
    curvature = 0.5

    def encode(self, y: Any) -> tuple[FloatArray, np.ndarray]:
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise WedgeNetError(f"y must be 1-D class labels for the softmax loss, got {y.shape}")
        classes, inv = np.unique(y, return_inverse=True)
        if classes.size < 2:
            raise WedgeNetError("softmax classification needs at least 2 distinct labels in y")
        Y = np.zeros((y.shape[0], classes.size))
        Y[np.arange(y.shape[0]), inv] = 1.0
        return Y, classes

    def value(self, U: FloatArray, Y: FloatArray) -> float:
        return float(np.sum(logsumexp(U, axis=1)) - np.sum(U * Y))

    def grad(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        P = np.exp(U - logsumexp(U, axis=1, keepdims=True))
        return np.asarray(P - Y)

    def dual_value(self, V: FloatArray, Y: FloatArray) -> float:
        P = Y - V
        if np.any(P < -1e-12) or np.any(np.abs(P.sum(axis=1) - 1) > 1e-9):
            return -np.inf
        P = np.clip(P, 0.0, 1.0)
        return float(-np.sum(xlogy(P, P)))

    def cvxpy(self, U: Any, Y: FloatArray) -> Any:
        import cvxpy as cp

        return cp.sum(cp.log_sum_exp(U, axis=1)) - cp.sum(cp.multiply(U, Y))

    def _offset_hessian(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        P = np.exp(U - logsumexp(U, axis=1, keepdims=True))
        return np.diag(P.sum(axis=0)) - P.T @ P

    def hessian(self, U: FloatArray, Y: FloatArray) -> FloatArray:
        P = np.exp(U - logsumexp(U, axis=1, keepdims=True))
        c = U.shape[1]
        return np.einsum("ij,jk->ijk", P, np.eye(c)) - P[:, :, None] * P[:, None, :]

    def _encode_classes(self, pos: NDArray[np.int64], n_classes: int) -> FloatArray:
        Y = np.zeros((pos.shape[0], n_classes))
        Y[np.arange(pos.shape[0]), pos] = 1.0
        return Y


LOSSES: dict[str, type[Loss]] = {
    cls.name: cls for cls in (SquaredLoss, LogisticLoss, HingeLoss, SoftmaxLoss)
}


def get_loss(name: str | Loss) -> Loss:
    """Look up a loss by name (``squared``, ``logistic``, ``hinge``, ``softmax``)."""
    if isinstance(name, Loss):
        return name
    try:
        return LOSSES[name]()
    except KeyError:
        raise WedgeNetError(
            f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}"
        ) from None
