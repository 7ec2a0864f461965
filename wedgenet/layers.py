"""Weights of fully connected ReLU networks as a list of ``(W, b)`` layers.

Everything in wedgenet that takes trained weights (polishing, the service's weight uploads)
works on one representation: a list of layers ``[(W_1, b_1), ..., (W_L, b_L)]`` in
**(in, out) layout**, ``W_l`` of shape ``(m_{l-1}, m_l)`` and ``b_l`` of shape ``(m_l,)``,
for the network

    a_0 = x,   a_l = relu(a_{l-1} W_l + b_l)  (l < L),   f(x) = a_{L-1} W_L + b_L

(ReLU after every layer but the last). This module turns the common ways of storing such
weights into that list and validates them; it does no file I/O (parse uploads elsewhere and
pass plain arrays).

Accepted inputs (:func:`as_layers` dispatches):

* a PyTorch ``state_dict`` of an ``nn.Sequential`` of ``Linear`` and ``ReLU`` modules:
  ``{"0.weight": (out, in), "0.bias": (out,), "2.weight": ..., ...}``; prefixes may be
  nested (``"net.0.weight"``) and are ordered by their numbers. Named layers
  (``"fc1.weight"``, ``"fc2.weight"``) are ordered by their numbers when the names differ
  only in digits; otherwise (``"hidden.weight"``, ``"out.weight"``) pass ``layer_names``
  (the prefixes in order, or a mapping ``prefix -> position``). Weight arrays may be numpy
  arrays, nested lists or anything ``numpy.asarray`` accepts (a CPU tensor).
* wedgenet's own arrays (:meth:`wedgenet.network.TwoLayerNetwork.to_arrays`):
  ``{"W1": (in, out), "b1": ..., "W2": ..., "b2": ...}``, already (in, out).
* a sequence of ``(W, b)`` pairs (or ``{"W": ..., "b": ...}`` mappings) in (in, out)
  layout; ``layout="out_in"`` for PyTorch-shaped matrices.

All errors are :class:`wedgenet.WedgeNetError` with a message naming the offending entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError

FloatArray = NDArray[np.float64]
Layer = tuple[FloatArray, FloatArray]
Layout = Literal["in_out", "out_in"]

_TORCH_SUFFIXES = ("weight", "bias")
_OWN_KEY = re.compile(r"^([Wb])(\d+)$")


#: File suffixes of PyTorch checkpoints and other pickles: refused everywhere (unpickling runs
#: arbitrary code), with :data:`PICKLE_HINT`.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
PICKLE_HINT = (
    "PyTorch checkpoints are pickles and are never unpickled (loading one runs arbitrary code). "
    "Convert the weights once, where you trust the file: "
    "from safetensors.torch import save_file; "
    "save_file(model.state_dict(), 'net.safetensors')  (or numpy.savez('net.npz', "
    "**{k: v.numpy() for k, v in model.state_dict().items()}))"
)


def _to_array(value: Any, name: str) -> FloatArray:
    """``value`` as a float64 array (tensors: detached and moved to the CPU first)."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        if hasattr(value, "numpy"):
            value = value.numpy()
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise WedgeNetError(f"{name} is not a numeric array: {exc}") from None
    return arr


def _natural_key(s: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def _shape_of_name(s: str) -> str:
    return re.sub(r"\d+", "#", s)


def _check_finite(arr: FloatArray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise WedgeNetError(f"{name} contains {bad} NaN or infinite value(s)")


def _order_prefixes(
    prefixes: Sequence[str], layer_names: Sequence[str] | Mapping[str, int] | None
) -> list[str]:
    if layer_names is not None:
        if isinstance(layer_names, Mapping):
            try:
                order = sorted(layer_names, key=lambda k: int(layer_names[k]))
            except (TypeError, ValueError):
                raise WedgeNetError(
                    "layer_names must map each layer prefix to an integer position"
                ) from None
            positions = [int(layer_names[k]) for k in order]
            if len(set(positions)) != len(positions):
                raise WedgeNetError(f"layer_names gives two layers the same position: {positions}")
        else:
            if isinstance(layer_names, str):
                raise WedgeNetError(
                    "layer_names must be a sequence of layer prefixes, not a string"
                )
            order = [str(k) for k in layer_names]
            if len(set(order)) != len(order):
                raise WedgeNetError(f"layer_names lists a layer twice: {order}")
        unknown = [k for k in order if k not in prefixes]
        if unknown:
            raise WedgeNetError(
                f"layer_names refers to layer(s) {unknown} that have no '<name>.weight' entry; "
                f"the state dict has {sorted(prefixes, key=_natural_key)}"
            )
        extra = [k for k in prefixes if k not in order]
        if extra:
            raise WedgeNetError(
                f"the state dict has layer(s) {sorted(extra, key=_natural_key)} that layer_names "
                f"does not place; list every Linear layer"
            )
        return order
    shapes = {_shape_of_name(p) for p in prefixes}
    if len(prefixes) > 1 and (len(shapes) != 1 or not any(ch.isdigit() for ch in prefixes[0])):
        raise WedgeNetError(
            f"cannot tell the order of the layers {sorted(prefixes)} from their names; pass "
            f"layer_names=[...] with the prefixes in forward order (first layer first)"
        )
    return sorted(prefixes, key=_natural_key)


def layers_from_state_dict(
    state_dict: Mapping[str, Any],
    *,
    layer_names: Sequence[str] | Mapping[str, int] | None = None,
    require_bias: bool = True,
) -> list[Layer]:
    """Layers ``[(W, b), ...]`` in (in, out) layout from a PyTorch-style ``state_dict``.

    Parameters
    ----------
    state_dict : mapping of str to array-like
        ``"<prefix>.weight"`` of shape (out, in) and ``"<prefix>.bias"`` of shape (out,)
        for every ``Linear`` layer. Other parameter kinds (batch norm, embeddings) are
        rejected: only ``Linear``/``ReLU`` stacks are supported.
    layer_names : sequence of str or mapping str -> int, optional
        The prefixes in forward order (or their positions); needed when the names do not
        tell the order (``"hidden"``, ``"out"``).
    require_bias : bool, default True
        A layer without ``.bias`` is an error; with ``False`` it gets zero biases (for
        bias-free networks).

    Returns
    -------
    list of (W, b)
        ``W`` of shape (in, out) (the transpose of PyTorch's), ``b`` of shape (out,).
    """
    if not isinstance(state_dict, Mapping):
        raise WedgeNetError(
            f"expected a mapping of parameter names to arrays, got {type(state_dict).__name__}"
        )
    if not state_dict:
        raise WedgeNetError("the state dict is empty")
    params: dict[str, dict[str, Any]] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or "." not in key:
            raise WedgeNetError(
                f"unexpected key {key!r}: PyTorch state dict keys look like '0.weight' or "
                f"'fc1.bias'"
            )
        prefix, _, suffix = key.rpartition(".")
        if suffix not in _TORCH_SUFFIXES:
            raise WedgeNetError(
                f"unsupported parameter {key!r}: only Linear layers ('<name>.weight', "
                f"'<name>.bias') followed by ReLU are supported"
            )
        params.setdefault(prefix, {})[suffix] = value
    no_weight = [p for p, d in params.items() if "weight" not in d]
    if no_weight:
        raise WedgeNetError(f"layer(s) {sorted(no_weight)} have a bias but no '.weight'")
    order = _order_prefixes(list(params), layer_names)
    layers: list[Layer] = []
    for prefix in order:
        W = _to_array(params[prefix]["weight"], f"{prefix}.weight")
        if W.ndim != 2:
            raise WedgeNetError(
                f"{prefix}.weight must be a 2-D (out, in) matrix, got shape {W.shape}"
            )
        _check_finite(W, f"{prefix}.weight")
        if "bias" in params[prefix]:
            b = _to_array(params[prefix]["bias"], f"{prefix}.bias")
            _check_finite(b, f"{prefix}.bias")
        elif require_bias:
            raise WedgeNetError(
                f"layer {prefix!r} has no bias ('{prefix}.bias' is missing); pass "
                f"require_bias=False for bias-free layers"
            )
        else:
            b = np.zeros(W.shape[0])
        if b.ndim != 1 or b.shape[0] != W.shape[0]:
            raise WedgeNetError(
                f"{prefix}.bias has shape {b.shape}; {prefix}.weight has shape {W.shape} "
                f"(out, in), so the bias must have shape ({W.shape[0]},)"
            )
        layers.append((np.ascontiguousarray(W.T), np.ascontiguousarray(b)))
    return check_layers(layers, names=[f"layer '{p}'" for p in order])


def layers_from_arrays(arrays: Mapping[str, Any], *, require_bias: bool = True) -> list[Layer]:
    """Layers from wedgenet's own naming ``W1, b1, W2, b2, ...`` (already (in, out))."""
    ws: dict[int, Any] = {}
    bs: dict[int, Any] = {}
    for key, value in arrays.items():
        mt = _OWN_KEY.match(str(key))
        if mt is None:
            raise WedgeNetError(
                f"unexpected key {key!r}: expected W1, b1, W2, b2, ... (in, out) layout"
            )
        (ws if mt.group(1) == "W" else bs)[int(mt.group(2))] = value
    if not ws:
        raise WedgeNetError("no weight matrices (W1, W2, ...) found")
    idx = sorted(ws)
    if idx != list(range(idx[0], idx[0] + len(idx))):
        names = [f"W{i}" for i in idx]
        raise WedgeNetError(f"weight matrices are not numbered consecutively: {names}")
    stray = sorted(set(bs) - set(ws))
    if stray:
        raise WedgeNetError(f"bias(es) {[f'b{i}' for i in stray]} have no weight matrix")
    layers: list[Layer] = []
    for i in idx:
        W = _to_array(ws[i], f"W{i}")
        if W.ndim == 1:
            W = W[:, None]
        if W.ndim != 2:
            raise WedgeNetError(f"W{i} must be a 2-D (in, out) matrix, got shape {W.shape}")
        if i in bs:
            b = np.atleast_1d(_to_array(bs[i], f"b{i}"))
        elif require_bias:
            raise WedgeNetError(f"b{i} is missing; pass require_bias=False for bias-free layers")
        else:
            b = np.zeros(W.shape[1])
        layers.append((W, b))
    return check_layers(layers, names=[f"layer {i} (W{i}, b{i})" for i in idx])


def layers_from_list(
    layers: Sequence[Any], *, layout: Layout = "in_out", require_bias: bool = True
) -> list[Layer]:
    """Layers from a sequence of ``(W, b)`` pairs or ``{"W": ..., "b": ...}`` mappings.

    ``layout="in_out"`` (default): ``W`` has shape (in, out). ``"out_in"``: PyTorch's
    (out, in), transposed here. A ``None`` bias is an error unless ``require_bias=False``.
    """
    if layout not in ("in_out", "out_in"):
        raise WedgeNetError(f"layout must be 'in_out' or 'out_in', got {layout!r}")
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
        raise WedgeNetError("layers must be a sequence of (W, b) pairs")
    if len(layers) == 0:
        raise WedgeNetError("layers is empty")
    out: list[Layer] = []
    for i, item in enumerate(layers, start=1):
        if isinstance(item, Mapping):
            if "W" not in item:
                raise WedgeNetError(f"layer {i} has no 'W' entry")
            Wv, bv = item["W"], item.get("b")
        else:
            try:
                Wv, bv = item
            except (TypeError, ValueError):
                raise WedgeNetError(f"layer {i} must be a (W, b) pair") from None
        W = _to_array(Wv, f"layer {i} weight")
        if W.ndim != 2:
            raise WedgeNetError(f"layer {i} weight must be 2-D, got shape {W.shape}")
        if layout == "out_in":
            W = W.T
        if bv is None:
            if require_bias:
                raise WedgeNetError(
                    f"layer {i} has no bias; pass require_bias=False for bias-free layers"
                )
            b = np.zeros(W.shape[1])
        else:
            b = np.atleast_1d(_to_array(bv, f"layer {i} bias"))
        out.append((np.ascontiguousarray(W), np.ascontiguousarray(b)))
    return check_layers(out)


def as_layers(
    weights: Any,
    *,
    layer_names: Sequence[str] | Mapping[str, int] | None = None,
    layout: Layout | None = None,
    require_bias: bool = True,
) -> list[Layer]:
    """Any supported weight container as validated layers (see the module docstring).

    A mapping with ``W1``/``b1`` keys is wedgenet's (in, out) layout; any other mapping is a
    PyTorch ``state_dict`` ((out, in) weights); a sequence is a list of ``(W, b)`` pairs in
    ``layout`` (default (in, out)).
    """
    if isinstance(weights, Mapping):
        keys = [str(k) for k in weights]
        if keys and all(_OWN_KEY.match(k) for k in keys):
            if layout == "out_in":
                raise WedgeNetError("W1/b1 arrays are always in (in, out) layout")
            return layers_from_arrays(weights, require_bias=require_bias)
        if layout == "in_out":
            raise WedgeNetError("state dict weights are always in PyTorch's (out, in) layout")
        return layers_from_state_dict(weights, layer_names=layer_names, require_bias=require_bias)
    return layers_from_list(weights, layout=layout or "in_out", require_bias=require_bias)


def check_layers(
    layers: Sequence[Layer],
    *,
    n_features: int | None = None,
    n_outputs: int | None = None,
    names: Sequence[str] | None = None,
) -> list[Layer]:
    """Validate a layer list: shapes chain, biases match, values finite, sizes fit the data.

    Parameters
    ----------
    layers : sequence of (W, b)
        (in, out) layout.
    n_features : int, optional
        Input dimension ``d`` of the data; the first layer must have ``d`` rows.
    n_outputs : int, optional
        Number of network outputs the loss expects; the last layer must have as many columns.
    names : sequence of str, optional
        Layer names for the messages (default ``layer 1``, ``layer 2``, ...).

    Returns
    -------
    list of (W, b)
        Float64 copies.
    """
    if len(layers) == 0:
        raise WedgeNetError("the network has no layers")
    labels = list(names) if names is not None else [f"layer {i}" for i in range(1, len(layers) + 1)]
    out: list[Layer] = []
    for i, (W, b) in enumerate(layers):
        name = labels[i]
        W = np.array(W, dtype=float)
        b = np.atleast_1d(np.array(b, dtype=float))
        if W.ndim != 2:
            raise WedgeNetError(f"{name}: weight must be 2-D (in, out), got shape {W.shape}")
        if W.shape[0] < 1 or W.shape[1] < 1:
            raise WedgeNetError(f"{name}: weight has an empty dimension, shape {W.shape}")
        if b.ndim != 1 or b.shape[0] != W.shape[1]:
            raise WedgeNetError(
                f"{name}: bias has shape {b.shape} but the weight has {W.shape[1]} outputs "
                f"(weight shape {W.shape}, (in, out) layout)"
            )
        _check_finite(W, f"{name} weight")
        _check_finite(b, f"{name} bias")
        if out and out[-1][0].shape[1] != W.shape[0]:
            prev = labels[i - 1]
            raise WedgeNetError(
                f"layer shapes do not chain: {prev} has {out[-1][0].shape[1]} outputs but "
                f"{name} expects {W.shape[0]} inputs (weights {out[-1][0].shape} then "
                f"{W.shape}, (in, out) layout)"
            )
        out.append((W, b))
    if n_features is not None and out[0][0].shape[0] != int(n_features):
        raise WedgeNetError(
            f"the first layer expects {out[0][0].shape[0]} input features but X has "
            f"{int(n_features)} columns (first weight shape {out[0][0].shape}, (in, out) layout)"
        )
    if n_outputs is not None and out[-1][0].shape[1] != int(n_outputs):
        raise WedgeNetError(
            f"the last layer has {out[-1][0].shape[1]} outputs but the targets need "
            f"{int(n_outputs)}"
        )
    return out


def forward(layers: Sequence[Layer], X: FloatArray) -> tuple[list[FloatArray], FloatArray]:
    """Hidden activations ``[a_1, ..., a_{L-1}]`` and the output ``f(X)`` (shape (n, c))."""
    A = np.asarray(X, dtype=float)
    hidden: list[FloatArray] = []
    for W, b in layers[:-1]:
        A = A @ W
        A += b
        np.maximum(A, 0.0, out=A)
        hidden.append(A)
    W, b = layers[-1]
    return hidden, A @ W + b


def layers_to_state_dict(
    layers: Sequence[Layer], *, relu_modules: bool = True
) -> dict[str, FloatArray]:
    """The inverse of :func:`layers_from_state_dict` for an ``nn.Sequential(Linear, ReLU, ...)``.

    Keys ``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ... (indices step by 2 for the ReLU
    modules in between when ``relu_modules``), weights in (out, in) layout.
    """
    step = 2 if relu_modules else 1
    out: dict[str, FloatArray] = {}
    for i, (W, b) in enumerate(layers):
        out[f"{i * step}.weight"] = np.ascontiguousarray(np.asarray(W, dtype=float).T)
        out[f"{i * step}.bias"] = np.asarray(b, dtype=float).copy()
    return out
