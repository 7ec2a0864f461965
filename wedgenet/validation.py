"""Input validation shared by every entry point (solve, polish, arrangement bounds).

Each check raises :class:`~wedgenet.exceptions.WedgeNetError` with a message naming the
argument and what is wrong with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError
from wedgenet.losses import Loss

FloatArray = NDArray[np.float64]

#: Default regularization strength of every entry point (library, estimators, CLI, service).
DEFAULT_LAM = 0.01


def check_lam(lam: Any) -> float:
    """``lam`` as a positive finite float (the one place it is validated)."""
    try:
        value = float(lam)
    except (TypeError, ValueError):
        raise WedgeNetError(f"lam must be a positive number, got {lam!r}") from None
    if isinstance(lam, bool) or not np.isfinite(value) or value <= 0:
        raise WedgeNetError(f"lam must be a positive number, got {lam!r}")
    return value


def check_X(X: Any, name: str = "X", n_features: int | None = None) -> FloatArray:
    """A finite, non-empty, 2-D float array (with ``n_features`` columns if given)."""
    try:
        arr = np.asarray(X, dtype=float)
    except (TypeError, ValueError) as exc:
        raise WedgeNetError(f"{name} must be a numeric 2-D array: {exc}") from None
    if arr.ndim != 2:
        raise WedgeNetError(f"{name} must be 2-dimensional (n, d), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise WedgeNetError(
            f"{name} must have at least one sample and one feature, got {arr.shape}"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise WedgeNetError(f"{name} must have shape (n, {n_features}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise WedgeNetError(f"{name} contains NaN or infinite values")
    return arr


def check_y(y: Any, n_samples: int, loss: Loss, names: tuple[str, str] = ("X", "y")) -> np.ndarray:
    """Targets with ``n_samples`` rows, finite, numeric unless the loss classifies."""
    x_name, y_name = names
    arr = np.asarray(y)
    if arr.ndim == 0 or arr.shape[0] != n_samples:
        got = arr.shape[0] if arr.ndim else "a scalar"
        raise WedgeNetError(
            f"{x_name} and {y_name} have different numbers of samples: {n_samples} and {got}"
        )
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise WedgeNetError(f"{y_name} contains NaN or infinite values")
    if not loss.classification and arr.dtype.kind not in "biuf":
        raise WedgeNetError(
            f"{y_name} must be numeric for the {loss.name} loss, got dtype {arr.dtype}"
        )
    return arr


def check_inputs(X: Any, y: Any, loss: Loss) -> tuple[FloatArray, FloatArray, np.ndarray | None]:
    """Validate ``X`` and ``y`` and encode the targets for ``loss``.

    Returns
    -------
    X : ndarray of shape (n, d)
    Y : ndarray of shape (n, c)
        Encoded targets (:meth:`wedgenet.losses.Loss.encode`).
    classes : ndarray or None
        Class labels for classification losses.
    """
    X = check_X(X)
    Y, classes = loss.encode(check_y(y, X.shape[0], loss))
    return X, Y, classes
