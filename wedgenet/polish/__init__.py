"""Polishing trained ReLU networks into interpretable ones (paper Sec. 4.1, docs/conventions.md
section 5).

Objective (docs/conventions.md section 2), summed loss, unregularized biases, for a two-layer
network ``f(x) = sum_j a_j relu(w_j . x + b_j) + c``:

    P(theta) = L(f(X), y) + (lam / 2) * sum_j ( ||w_j||_p^2 + ||a_j||_2^2 )

and, for a deeper MLP ``a_l = relu(a_{l-1} W_l + b_l)``, ``f = a_{L-1} W_L + b_L``, its
natural extension (each hidden neuron's incoming weights in the p-norm, each output row of
``W_L`` in the 2-norm; for ``p = 2`` plain weight decay ``(lam/2) sum_l ||W_l||_F^2``):

    P(theta) = L(f(X), y) + (lam / 2) * [ sum_{l < L} sum_j ||W_l[:, j]||_p^2
                                          + sum_j ||W_L[j, :]||_2^2 ]

Two-layer networks (:func:`polish`)
-----------------------------------
1. **Polish** (:func:`polish_layer`). Lift the samples to ``g_i = [x_i, 1]`` (bias) and let
   ``r`` be the rank of the lifted data (SVD; rank-deficient data are worked on in their
   ``r``-dimensional span, Lemma 23, with the coordinates of :class:`WedgeDictionary` for
   ``p = 2``). For every neuron ``h_j = (w_j, b_j)`` rank the samples by
   ``|g_i . h_j| / ||g_i||`` (``criterion="residual"``, the default) or by the distance
   ``|g_i . h_j|`` (``criterion="distance"``), take the ``r - 1`` closest, and replace the
   neuron by their generalized cross product, computed for all neurons at once by one
   batched Householder QR (the null vector of the ``(r - 1) x r`` generator matrix; the
   ``R`` diagonal detects dependent choices, which are replaced by the next closest samples,
   greedily in distance order). The sign is aligned with the original neuron
   (``h_new . h_old > 0``) and ``||w||_p = 1``.
2. **Refit** the output layer by the convex program over fixed unit-norm features
   ``k_j = relu(X w_j + b_j)``:

       min_{Z, t}  L(K Z + 1 t, y) + lam * sum_j ||Z_j||_2      (the Lasso for scalar output)

   with ``K`` the **union** of the original (unit-normalized) and the polished neurons
   (``refit="union"``, default), only the polished ones (``refit="polished"``: every
   neuron is then a closed form; the price in objective is reported) or only the original
   ones (``refit="original"``: no polishing, a baseline). The program is
   solved by the engine's restricted-solver chain
   (:func:`wedgenet.solvers.solve_program`: active set, proximal Newton, HiGHS, group
   proximal Newton; coordinate descent and CLARABEL only where these miss the tolerance).
   The relative duality gap of the refit is reported.
3. **Rebalance** (Sec. 9.12): column ``j`` with coefficient row ``Z_j`` becomes the neuron
   ``sqrt(||Z_j||) (w_j, b_j)`` with output weights ``Z_j / sqrt(||Z_j||)``, so the network's
   ``P`` equals the program's objective.

*Never worse* (union, two layers): the input network is a feasible point of the union
program. With ``z_j = ||w_j||_p a_j``, ``t = c`` it has the same outputs and objective
``L + lam sum_j ||w_j||_p ||a_j|| <= P(theta)`` (AM-GM; equality when ``theta`` is already
balanced; neurons with ``w_j = 0`` are constants and move into ``t``). The solver's point is
compared with that feasible point and the better one is kept, so
``objective_after <= objective_rebalanced <= objective_before`` holds exactly, not only up
to the solver's tolerance.

Deep MLPs (3+ layers), Thm 10/11 structure
------------------------------------------
Layer by layer, as in the proofs of Thm 10/11: the polished path starts at ``F_0 = X``;
for each hidden layer ``l``: polish that layer's neurons against ``F_{l-1}`` (for ``l = 1``
the given ``W_1``; later the refit weights below), ``F_l = relu(F_{l-1} P_l + e_l)`` with
unit-norm polished neurons; if layer ``l + 1`` is hidden, refit its weights on ``F_l`` by
the group Lasso (squared loss, strength ``lam``, one group per polished neuron) that
reproduces the *original* pre-activations ``a_l W_{l+1} + b_{l+1}`` of the given network
(the matching problem (81)/(83) of the proofs with its equality relaxed to a penalty). The
last layer is refit by the convex program above over the union of the original network's
last hidden layer (on the original path) and the polished path's last layer. The result is
one MLP whose hidden layers hold both paths side by side (block-diagonal weights); neurons
that no longer reach the output are pruned, and each path is rescaled layer-wise by the
optimal positive factors (Lemma 27 / AM-GM: ``(k + 2) (S^2 prod_l R_l)^(1/(k+2))`` for a
path with ``k`` inner layers of squared norms ``R_l`` and last-layer weight ``S``).
The refit does not see the regularization of the polished path's inner layers, so its
solution is not guaranteed to beat the input network on ``P``. The guarantee is restored by
selection: the input network itself (original path, last block rebalanced, layer-wise
rescaled, ``P <= P(theta)``) is a second candidate and the one with the lower ``P`` is
returned (``PolishResult.selected`` says which). So for ``refit="union"`` and
``"original"`` the result is never worse for deep nets either, but it may be the input
network rebalanced, with nothing polished surviving.
"""

from wedgenet.polish.layer import POLISH_DEGENERACY_TOL, Criterion, LayerPolish, polish_layer
from wedgenet.polish.mlp import ZERO_REL_TOL, mlp_objective
from wedgenet.polish.network import Refit, polish
from wedgenet.polish.result import NeuronReport, PolishResult

__all__ = [
    "POLISH_DEGENERACY_TOL",
    "ZERO_REL_TOL",
    "Criterion",
    "LayerPolish",
    "NeuronReport",
    "PolishResult",
    "Refit",
    "mlp_objective",
    "polish",
    "polish_layer",
]
