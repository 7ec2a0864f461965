"""Loss helpers that the solvers lean on."""

from __future__ import annotations

import numpy as np
import pytest

from wedgenet.losses import get_loss


@pytest.mark.parametrize("shift", [0.0, 30.0, 800.0])
def test_logistic_optimal_offset_with_vanishing_curvature(shift: float) -> None:
    # Margins of hundreds make sigma(u)(1 - sigma(u)) underflow: an undamped Newton step on
    # the offset would jump to ~1e290. The offset must stay finite and be optimal.
    rng = np.random.default_rng(0)
    Y = np.where(rng.random((40, 1)) < 0.5, 1.0, -1.0)
    # a third of the samples misclassified by the same huge margin: the gradient is O(1)
    flip = np.where(np.arange(40)[:, None] % 3 == 0, -1.0, 1.0)
    U = Y * flip * shift + rng.standard_normal((40, 1))
    loss = get_loss("logistic")
    t = loss.optimal_offset(U, Y, np.zeros(1))
    assert np.all(np.isfinite(t))
    f = loss.value(U + t, Y)
    for dt in (-1e-3, 1e-3):
        assert f <= loss.value(U + t + dt, Y) + 1e-12 * max(1.0, f)
