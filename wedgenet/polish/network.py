"""``polish``: polish a trained network (two layers or a deep MLP) and refit it by the
convex program (see :mod:`wedgenet.polish`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.dictionary import WedgeDictionary
from wedgenet.exceptions import WedgeNetError
from wedgenet.geometry import one_blas_thread
from wedgenet.interrupt import checkpoint
from wedgenet.layers import Layer, as_layers, check_layers, forward
from wedgenet.losses import Loss, SquaredLoss, get_loss
from wedgenet.network import Neuron, TwoLayerNetwork
from wedgenet.polish.layer import Criterion, polish_layer
from wedgenet.polish.mlp import NetworkPath, assemble, drop_small_rows, mlp_value, prune_and_scale
from wedgenet.polish.result import NeuronReport, PolishResult, layer_formula
from wedgenet.programs import Program, group_norms, primal_value
from wedgenet.solvers import solve_program
from wedgenet.validation import check_inputs, check_lam, check_X, check_y

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
Refit = Literal["union", "polished", "original"]



def _split(
    X: FloatArray,
    y: Any,
    validation: tuple[Any, Any] | None,
    validation_fraction: float | None,
    seed: int,
) -> tuple[IntArray, IntArray | None, tuple[Any, Any] | None]:
    n = X.shape[0]
    if validation is not None and validation_fraction is not None:
        raise WedgeNetError(
            "pass either validation=(X_val, y_val) or validation_fraction, not both"
        )
    if validation_fraction is None:
        return np.arange(n), None, validation
    try:
        frac = float(validation_fraction)
    except (TypeError, ValueError):
        raise WedgeNetError(
            f"validation_fraction must be a number, got {validation_fraction!r}"
        ) from None
    if not (0.0 < frac < 1.0):
        raise WedgeNetError(
            f"validation_fraction must be in (0, 1), got {frac}: the validation split cannot "
            f"be larger than the data"
        )
    n_val = int(round(frac * n))
    if n_val < 1 or n - n_val < 2:
        raise WedgeNetError(
            f"validation_fraction={frac} of {n} samples leaves {n - n_val} for training and "
            f"{n_val} for validation; need at least 2 and 1"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val]), None


def polish(
    X: Any,
    y: Any,
    layers: Any,
    *,
    loss: str | Loss = "squared",
    lam: float,
    p: int = 1,
    bias: bool = True,
    refit: Refit = "union",
    validation: tuple[Any, Any] | None = None,
    validation_fraction: float | None = None,
    seed: int = 0,
    criterion: Criterion = "residual",
    fit_offset: bool = True,
    tol: float = 1e-7,
    max_sweeps: int = 5000,
    layer_names: Sequence[str] | None = None,
) -> PolishResult:
    """Polish a trained ReLU network into an interpretable one (Sec. 4.1), never worse.

    Parameters
    ----------
    X : array-like of shape (n, d)
    y : array-like of shape (n,) or (n, c)
        Targets, encoded as for :func:`wedgenet.solve` (for ``logistic``, the network's
        output ``> 0`` means the larger of the two labels).
    layers : list of (W, b) in (in, out) layout, a PyTorch ``state_dict``, or ``W1/b1``
        arrays (see :mod:`wedgenet.layers`). Two layers for a two-layer network, more for
        an MLP (ReLU between layers, none after the last).
    loss : {"squared", "logistic", "hinge", "softmax"}
    lam : float
        Regularization strength of ``P`` (docs/conventions.md section 2), > 0.
    p : {1, 2}
        Norm of the hidden weights in ``P`` and of the polished neurons' normalization.
    bias : bool
        Hidden neurons have biases (samples lifted to ``[x, 1]``). With ``False`` the given
        hidden biases must be zero.
    refit : {"union", "polished", "original"}
        Columns of the output-layer refit: original and polished neurons (never worse),
        only the polished ones (fully interpretable; may cost objective), or only the
        original ones (no polishing; a baseline).
    validation : (X_val, y_val), optional
        Held-out data for the metrics.
    validation_fraction : float in (0, 1), optional
        Hold out this fraction of ``X`` (random, ``seed``) instead; polishing and the
        refit use the rest. Index sets always refer to rows of ``X`` as given.
    seed : int
    criterion : {"residual", "distance"}
        How samples are ranked for each neuron (see :func:`polish_layer`).
    fit_offset : bool
        Free output bias (the given output bias must be 0 when ``False``).
    tol : float
        Target relative duality gap of the refit (reported as ``refit_gap``).
    max_sweeps : int
        Cap on coordinate-descent sweeps of a squared-loss refit. The result is never worse
        than the input however early the solver stops (see the module docstring).
    layer_names : sequence of str, optional
        Layer order for a state dict whose names do not tell it.

    Returns
    -------
    PolishResult

    Raises
    ------
    WedgeNetError
        For inconsistent shapes, non-finite weights or data, a bad split or bad options.
    """
    t_start = time.perf_counter()
    lam = check_lam(lam)
    if p not in (1, 2):
        raise WedgeNetError(f"p must be 1 or 2, got {p!r}")
    if refit not in ("union", "polished", "original"):
        raise WedgeNetError(f"refit must be 'union', 'polished' or 'original', got {refit!r}")
    if criterion not in ("residual", "distance"):
        raise WedgeNetError(f"criterion must be 'residual' or 'distance', got {criterion!r}")
    if not (0 < tol < 1):
        raise WedgeNetError(f"tol must be in (0, 1), got {tol}")
    loss_obj = get_loss(loss)
    X_all = check_X(X)
    y_all = check_y(y, X_all.shape[0], loss_obj)
    train_idx, val_idx, validation = _split(X_all, y_all, validation, validation_fraction, seed)
    Xtr, Ytr, classes = check_inputs(X_all[train_idx], y_all[train_idx], loss_obj)
    n, d = Xtr.shape
    c = Ytr.shape[1]
    net_layers = as_layers(layers, layer_names=layer_names, require_bias=bias)
    net_layers = check_layers(net_layers, n_features=d, n_outputs=c)
    if len(net_layers) < 2:
        raise WedgeNetError(
            "polishing needs at least two layers (a hidden layer and an output layer)"
        )
    if not bias:
        for i, (_, b) in enumerate(net_layers[:-1], start=1):
            if np.any(b != 0):
                raise WedgeNetError(
                    f"bias=False but hidden layer {i} has nonzero biases; polish with bias=True"
                )
    if not fit_offset and np.any(net_layers[-1][1] != 0):
        raise WedgeNetError("fit_offset=False but the output layer has a nonzero bias")
    # Validation data.
    Xv: FloatArray | None = None
    Yv: FloatArray | None = None
    if val_idx is not None:
        Xv = X_all[val_idx]
        Yv = loss_obj.encode_like(y_all[val_idx], classes)
        if not np.all(np.isfinite(Xv)):
            raise WedgeNetError("X contains NaN or infinite values")
    elif validation is not None:
        try:
            Xv_raw, yv_raw = validation
        except (TypeError, ValueError):
            raise WedgeNetError("validation must be a pair (X_val, y_val)") from None
        Xv = check_X(Xv_raw, "X_val", n_features=d)
        yv_arr = check_y(yv_raw, Xv.shape[0], loss_obj, names=("X_val", "y_val"))
        Yv = loss_obj.encode_like(yv_arr, classes)
        if Yv.shape[1] != c:
            raise WedgeNetError(f"y_val has {Yv.shape[1]} outputs, y has {c}")

    params = {
        "loss": loss_obj.name, "lam": lam, "p": int(p), "bias": bool(bias), "refit": refit,
        "criterion": criterion, "fit_offset": bool(fit_offset), "tol": float(tol),
        "max_sweeps": int(max_sweeps),
        "seed": int(seed), "validation_fraction": validation_fraction,
        "n_train": int(n), "n_validation": None if Xv is None else int(Xv.shape[0]),
        "architecture": [int(net_layers[0][0].shape[0])] + [int(W.shape[1]) for W, _ in net_layers],
    }
    with one_blas_thread():  # only its coordinates (an SVD for p = 2) are computed
        formula_dict = WedgeDictionary(X_all, p=p, bias=bias, source="given", index_sets=[])
    core = _polish_core(
        Xtr, Ytr, net_layers, loss_obj, lam, p, bias, refit, criterion, fit_offset, tol,
        max_sweeps, train_idx, formula_dict,
    )
    result_layers: list[Layer] = core["layers"]

    def outputs(lys: list[Layer], Xm: FloatArray) -> FloatArray:
        return forward(lys, Xm)[1]

    metrics: dict[str, Any] = {
        "train": {
            "before": loss_obj.metrics(forward(net_layers, Xtr)[1], Ytr),
            "after": loss_obj.metrics(outputs(result_layers, Xtr), Ytr),
        }
    }
    if Xv is not None and Yv is not None:
        metrics["validation"] = {
            "before": loss_obj.metrics(forward(net_layers, Xv)[1], Yv),
            "after": loss_obj.metrics(outputs(result_layers, Xv), Yv),
        }
    network = core["network"]
    timings = dict(core["timings"])
    timings["total"] = time.perf_counter() - t_start
    return PolishResult(
        network=network,
        layers=result_layers,
        objective_before=core["before"],
        objective_rebalanced=core["rebalanced"],
        objective_after=core["after"],
        metrics=metrics,
        neurons=core["neurons"],
        refit=refit,
        selected=core["selected"],
        refit_gap=core["gap"],
        refit_solver=core["solver"],
        params=params,
        timings=timings,
        train_indices=train_idx if val_idx is not None else None,
        validation_indices=val_idx,
        classes=classes,
        extra=core["extra"],
    )


def _polish_core(
    X: FloatArray,
    Y: FloatArray,
    layers: list[Layer],
    loss: Loss,
    lam: float,
    p: int,
    bias: bool,
    refit: Refit,
    criterion: Criterion,
    fit_offset: bool,
    tol: float,
    max_sweeps: int,
    train_idx: IntArray,
    formula_dict: WedgeDictionary,
) -> dict[str, Any]:
    L = len(layers)
    n_hidden = L - 1
    n, d = X.shape
    c = Y.shape[1]
    before = mlp_value(layers, X, Y, loss, lam, p)
    hidden, _ = forward(layers, X)
    acts = [X] + hidden  # acts[l] = a_l on the original path
    timings: dict[str, float] = {"polish": 0.0, "inner_refit": 0.0, "refit": 0.0}
    reports: list[NeuronReport] = []
    layer_info: list[dict[str, Any]] = []

    # ---- the polished path, layer by layer (Thm 10/11)
    pol_inner: list[Layer] = []
    pol_ids: list[IntArray] = []
    last_pol: FloatArray | None = None
    F = X
    V, cvec = layers[0]
    if refit != "original":
        for layer in range(1, n_hidden + 1):
            checkpoint("polishing a layer")
            lp = polish_layer(F, V, cvec if bias else None, p=p, bias=bias,
                              criterion=criterion, row_ids=train_idx)
            timings["polish"] += lp.time
            okc = np.flatnonzero(lp.ok)
            layer_info.append({
                "layer": layer, "n_neurons": int(V.shape[1]), "n_polished": int(okc.size),
                "n_through": int(lp.dim - 1), "n_fallback": int(lp.n_fallback),
                "max_residual": float(np.max(lp.residual[okc])) if okc.size else None,
                "time": float(lp.time),
            })
            for j in range(V.shape[1]):
                iset = lp.index_set(j)
                formula = ""
                if iset is not None:
                    sub = np.array(iset.samples, dtype=np.int64)
                    formula = layer_formula(formula_dict.formula(sub, iset.sign), layer)
                okj = bool(lp.ok[j])
                reports.append(NeuronReport(
                    layer=layer, kind="polished", source=j, index_set=iset, formula=formula,
                    angle_deg=float(lp.angle_deg[j]) if okj else None,
                    weight_angle_deg=float(lp.weight_angle_deg[j]) if okj else None,
                    residual=float(lp.residual[j]) if okj else None,
                    survived=False, output_norm=None,
                    normal=lp.normals[j].copy() if okj else None,
                ))
            Pn = lp.normals[okc]  # (m_ok, in + 1), unit p-norm
            Fn = np.maximum(F @ Pn[:, :-1].T + Pn[:, -1], 0.0)
            pol_ids.append(okc)
            if layer < n_hidden:
                # Weights of the next layer on the polished features: the group Lasso that
                # reproduces the original pre-activations of the next layer.
                t0 = time.perf_counter()
                W_next, b_next = layers[layer]
                T = acts[layer] @ W_next + b_next
                sub_sol = solve_program(
                    Program(Fn, T, SquaredLoss(), lam, bias), tol=1e-7, max_sweeps=max_sweeps
                )
                timings["inner_refit"] += time.perf_counter() - t0
                pol_inner.append((np.ascontiguousarray(Pn[:, :-1].T), Pn[:, -1].copy()))
                V = np.asarray(sub_sol.Z, dtype=float)
                cvec = np.asarray(sub_sol.t, dtype=float) if bias else np.zeros(W_next.shape[1])
            else:
                last_pol = Pn
            F = Fn

    # ---- the original path's last hidden layer, unit-normalized, and the feasible point
    W_last, b_last = layers[n_hidden - 1]
    W_out, b_out = layers[-1]
    A_in = acts[n_hidden - 1]
    wn = np.linalg.norm(W_last, ord=p, axis=0)
    live = np.flatnonzero(wn > 0)
    dead = np.flatnonzero(wn == 0)
    orig_last = np.concatenate([W_last[:, live].T, b_last[live, None]], axis=1) / wn[live, None]
    K_orig = np.maximum(A_in @ orig_last[:, :-1].T + orig_last[:, -1], 0.0)
    Z_feas = wn[live, None] * W_out[live]
    t_feas = np.asarray(
        b_out + (np.maximum(b_last[dead], 0.0) @ W_out[dead] if dead.size else 0.0), dtype=float
    ).reshape(c)
    orig_inner = [(np.asarray(W), np.asarray(b)) for W, b in layers[: n_hidden - 1]]
    orig_ids = [np.arange(W.shape[1]) for W, _ in orig_inner] + [live]

    program_feas = primal_value(loss, K_orig @ Z_feas + t_feas, Y, Z_feas, lam)
    columns = {"original": K_orig, "polished": F}

    def solve_blocks(names: list[str]) -> tuple[dict[str, FloatArray], FloatArray, float, Any]:
        """Refit over the named column blocks; never above the input's point if it is there."""
        K = np.concatenate([columns[nm] for nm in names], axis=1)
        sol = solve_program(Program(K, Y, loss, lam, fit_offset), tol=tol, max_sweeps=max_sweeps)
        Z = drop_small_rows(np.asarray(sol.Z, dtype=float).reshape(K.shape[1], c))
        t = np.asarray(sol.t, dtype=float).reshape(c)
        if fit_offset and loss.smooth:
            t = loss.optimal_offset(K @ Z, Y, t)
        value = primal_value(loss, K @ Z + t, Y, Z, lam)
        if "original" in names and value > program_feas:
            # The solver stopped short of the input network's own point: take that point.
            Z = np.zeros_like(Z)
            Z[: K_orig.shape[1]] = Z_feas
            t, value = t_feas.copy(), program_feas
            sol.solver = sol.solver + "+feasible_point"
        offs = np.cumsum([0] + [columns[nm].shape[1] for nm in names])
        return {nm: Z[offs[i] : offs[i + 1]] for i, nm in enumerate(names)}, t, value, sol

    # ---- assemble (prune, rescale) and evaluate P
    def build(
        zb: dict[str, FloatArray], t: FloatArray
    ) -> tuple[list[Layer], dict[str, NetworkPath]]:
        kept: dict[str, NetworkPath] = {}
        for name, Zp in zb.items():
            if name == "original":
                q = NetworkPath("original", orig_inner, orig_last, Zp, orig_ids)
            else:
                assert last_pol is not None
                q = NetworkPath("polished", pol_inner, last_pol, Zp, pol_ids)
            pq = prune_and_scale(q, p)
            if pq is not None:
                kept[name] = pq
        return assemble(list(kept.values()), t, n_hidden, d), kept

    def objective(lys: list[Layer], t: FloatArray) -> float:
        return mlp_value(lys, X, Y, loss, lam, p)

    main_names = {"union": ["original", "polished"], "original": ["original"],
                  "polished": ["polished"]}[refit]
    t0 = time.perf_counter()
    Z_blocks, t_out, program_after, sol = solve_blocks(main_names)
    timings["refit"] = time.perf_counter() - t0
    out_layers, out_paths = build(Z_blocks, t_out)
    after = objective(out_layers, t_out)
    selected = "refit" if "feasible_point" not in sol.solver else "feasible_point"
    reb_layers, reb_paths = build({"original": Z_feas}, t_feas)
    rebalanced = objective(reb_layers, t_feas)
    candidates = {selected: after, "input_rebalanced": rebalanced}
    if refit == "union" and n_hidden > 1:
        # Deep nets: the refit does not see the regularization of the polished path's inner
        # layers, so the union optimum need not be the best network. Try both paths alone.
        for nm in ("polished", "original"):
            t0 = time.perf_counter()
            zb, tt, _, sol_nm = solve_blocks([nm])
            timings["refit"] += time.perf_counter() - t0
            lys, paths = build(zb, tt)
            val = objective(lys, tt)
            candidates[f"refit_{nm}_only"] = val
            if val < after:
                full = {name: np.zeros_like(Zp) for name, Zp in Z_blocks.items()}
                full[nm] = zb[nm]
                out_layers, out_paths, after, t_out, Z_blocks = lys, paths, val, tt, full
                selected, sol = f"refit_{nm}_only", sol_nm
    if refit != "polished" and after > rebalanced:
        # Deep nets only (or rounding): keep the input network, rebalanced: never worse.
        out_layers, out_paths, after, t_out = reb_layers, reb_paths, rebalanced, t_feas
        selected = "input_rebalanced"
        Z_blocks = {name: (Z_feas if name == "original" else np.zeros_like(Zp))
                    for name, Zp in Z_blocks.items()}

    # ---- per-neuron report: original neurons of the refit layer, survival flags
    if "original" in Z_blocks:
        g = group_norms(Z_blocks["original"])
        for jj, s in enumerate(live):
            reports.append(NeuronReport(
                layer=n_hidden, kind="original", source=int(s), index_set=None,
                formula=f"original neuron {int(s)} of layer {n_hidden}",
                angle_deg=None, weight_angle_deg=None, residual=None,
                survived=bool(g[jj] > 0), output_norm=float(g[jj]), normal=orig_last[jj].copy(),
            ))
    if "polished" in Z_blocks:
        g = group_norms(Z_blocks["polished"])
        by_source = {int(s): float(v) for s, v in zip(pol_ids[-1], g, strict=True)}
        for r in reports:
            if r.kind == "polished" and r.layer == n_hidden:
                v = by_source.get(r.source, 0.0)
                r.survived, r.output_norm = v > 0, v
        path = out_paths.get("polished")
        alive = [set() for _ in range(n_hidden)] if path is None else [
            {int(i) for i in ids} for ids in path.ids
        ]
        for r in reports:
            if r.kind == "polished" and r.layer < n_hidden:
                r.survived = r.source in alive[r.layer - 1]

    network = None
    if L == 2:
        network = _two_layer_network(out_layers, out_paths, reports, t_out, d)
    extra = {
        "program_objective": float(program_after),
        "candidates": candidates,
        "rebalanced_program_objective": float(program_feas),
        "polished_layers": layer_info,
        "n_layers": L,
    }
    return {
        "layers": out_layers, "network": network, "before": before, "rebalanced": rebalanced,
        "after": after, "neurons": reports, "selected": selected, "gap": float(sol.gap),
        "solver": sol.solver, "timings": timings, "extra": extra,
    }


def _two_layer_network(
    layers: list[Layer],
    paths: dict[str, NetworkPath],
    reports: list[NeuronReport],
    t: FloatArray,
    d: int,
) -> TwoLayerNetwork:
    """The assembled two-layer result with every neuron's report attached."""
    (W1, b1), (W2, b2) = layers
    lookup = {(r.kind, r.source): r for r in reports if r.layer == 1}
    labels = [(name, int(s)) for name, q in paths.items() for s in q.ids[-1]]
    neurons: list[Neuron] = []
    for j, (kind, src) in enumerate(labels):
        rep = lookup.get((kind, src))
        extra: dict[str, Any] = {"kind": kind, "source": src}
        if rep is not None and kind == "polished":
            extra["angle_deg"] = rep.angle_deg
        neurons.append(Neuron(
            weight=W1[:, j].copy(), bias=float(b1[j]), output_weight=W2[j].copy(),
            index_set=None if rep is None else rep.index_set,
            formula="" if rep is None else rep.formula,
            residual=0.0 if rep is None or rep.residual is None else float(rep.residual),
            extra=extra,
        ))
    return TwoLayerNetwork(neurons=neurons, output_bias=np.asarray(b2, dtype=float), n_features=d)

