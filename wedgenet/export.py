"""Artifacts of a trained network: PyTorch-named weights, ONNX, safetensors and a model card.

Everything here returns bytes or plain dictionaries (no files are written):

* :func:`state_dict`: the weights under the names of ``torch.nn.Sequential(Linear, ReLU,
  Linear, ...)`` (``"0.weight"`` of shape (out, in), ``"0.bias"``, ``"2.weight"``, ...), so
  ``model.load_state_dict({k: torch.from_numpy(v) ...})`` loads them.
* :func:`model_card`: what produced the network (wedgenet version, parameters, dataset hash,
  objective, dual bound, gap, certified, and every neuron's index set and formula);
  :func:`card_from_dict` builds the same card from a stored ``to_dict()`` (the service).
* :func:`to_safetensors`: the state dict, with the model card as JSON in the header's
  ``__metadata__`` (key ``"wedgenet_model_card"``).
* :func:`to_onnx`: an ONNX graph (``MatMul``, ``Add``, ``Relu``; optionally ``Sigmoid`` or
  ``Softmax`` probabilities) with the model card in the model's metadata properties; needs the
  ``onnx`` package (``pip install 'wedgenet[export]'``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from wedgenet.exceptions import WedgeNetError
from wedgenet.layers import Layer, check_layers, layers_to_state_dict
from wedgenet.network import TwoLayerNetwork

FloatArray = NDArray[np.float64]
#: Metadata key of the model card in safetensors headers and ONNX metadata properties.
MODEL_CARD_KEY = "wedgenet_model_card"
Output = Literal["scores", "probabilities"]


def as_layer_list(network: TwoLayerNetwork | Sequence[Layer]) -> list[Layer]:
    """``[(W, b), ...]`` in (in, out) layout for a :class:`TwoLayerNetwork` or layers."""
    if isinstance(network, TwoLayerNetwork):
        arrays = network.to_arrays()
        return [(arrays["W1"], arrays["b1"]), (arrays["W2"], arrays["b2"])]
    layers = [(np.asarray(W, dtype=float), np.asarray(b, dtype=float)) for W, b in network]
    check_layers(layers)
    return layers


def state_dict(network: TwoLayerNetwork | Sequence[Layer]) -> dict[str, FloatArray]:
    """Weights under PyTorch ``nn.Sequential(Linear, ReLU, Linear, ...)`` names."""
    return layers_to_state_dict(as_layer_list(network))


def model_card(
    result: Any,
    *,
    dataset_sha256: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A JSON-able description of what produced a network.

    Parameters
    ----------
    result : SolveResult or PolishResult
        The solve (objective, dual bound, gap, certificate, neurons) or the polish
        (objectives before and after, neuron reports).
    dataset_sha256 : str, optional
        Hash of the training data, when known (the service stores one per dataset).
    extra : dict, optional
        Further fields (e.g. the service's job and network ids).
    """
    return card_from_dict(result.to_dict(), dataset_sha256=dataset_sha256, extra=extra)


def card_from_dict(
    data: dict[str, Any],
    *,
    dataset_sha256: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card of :func:`model_card` from a result's ``to_dict()`` (or a stored copy
    of it with the same keys, e.g. the service's network summary plus its neurons).

    A solve is recognized by ``primal_objective``: it needs ``params``, ``primal_objective``,
    ``dual_objective``, ``relative_gap``, ``certified`` and ``network.neurons``; a polish
    needs ``params``, ``objective_before``, ``objective_after`` and ``neurons`` (its neuron
    reports). Other keys of a solve's ``to_dict()`` are read when present (``None`` when not).
    A three-layer solve (``ThreeLayerResult.to_dict()``) has ``network.blocks`` instead of
    ``network.neurons``: the card lists the blocks with their first-layer index set, bias
    sample ``l``, threshold sample ``j0``, shape and formula, and ``depth`` 3.
    """
    from wedgenet import __version__

    card: dict[str, Any] = {"wedgenet_version": __version__, "dataset_sha256": dataset_sha256}
    if "primal_objective" in data:  # a solve
        card.update(
            kind="solve",
            parameters=data["params"],
            objective=data["primal_objective"],
            dual_bound=data["dual_objective"],
            relative_gap=data["relative_gap"],
            certified=data["certified"],
            certifies_network=data.get("certifies_network"),
            scanned=data.get("scanned"),
            certificate_note=data.get("certificate_note"),
            classes=data.get("classes"),
            neurons=[
                {"index_set": nr.get("index_set"), "formula": nr.get("formula", ""),
                 "residual": nr.get("residual")}
                for nr in data["network"].get("neurons", [])
            ],
        )
        if "blocks" in data["network"]:  # a three-layer network
            card.update(depth=3, blocks=[
                {k: blk.get(k) for k in ("index_set", "bias_sample", "threshold_sample",
                                         "shape", "formula", "residual")}
                for blk in data["network"]["blocks"]
            ])
    else:  # a polish
        card.update(
            kind="polish",
            parameters=data["params"],
            objective_before=data["objective_before"],
            objective=data["objective_after"],
            refit_relative_gap=data.get("refit_gap"),
            certified=False,
            classes=data.get("classes"),
            neurons=[
                {"layer": r.get("layer"), "kind": r.get("kind"), "index_set": r.get("index_set"),
                 "formula": r.get("formula", ""), "residual": r.get("residual")}
                for r in data["neurons"]
            ],
        )
    card.update(extra or {})
    return card


def to_safetensors(
    network: TwoLayerNetwork | Sequence[Layer], card: dict[str, Any] | None = None
) -> bytes:
    """The PyTorch-named state dict as safetensors, the model card in the header metadata."""
    from safetensors.numpy import save

    metadata = None if card is None else {MODEL_CARD_KEY: json.dumps(card, allow_nan=False)}
    return bytes(save(state_dict(network), metadata=metadata))


def to_onnx(
    network: TwoLayerNetwork | Sequence[Layer],
    *,
    output: Output = "scores",
    loss: str | None = None,
    dtype: Literal["float32", "float64"] = "float32",
    card: dict[str, Any] | None = None,
    opset: int = 17,
) -> bytes:
    """The network as a serialized ONNX model with input ``"X"`` of shape (batch, d).

    Parameters
    ----------
    network : TwoLayerNetwork or list of (W, b)
    output : {"scores", "probabilities"}, default "scores"
        ``"scores"``: the network's outputs (output ``"scores"``). ``"probabilities"``
        (classification): sigmoid of the single output as two columns ``[1 - p, p]``
        (``loss="logistic"``) or the softmax of the outputs (``loss="softmax"``), as
        ``predict_proba`` returns them (output ``"probabilities"``).
    loss : str, optional
        Needed for ``output="probabilities"``.
    dtype : {"float32", "float64"}, default "float32"
    card : dict, optional
        Model card, stored as JSON in the model's metadata (key ``wedgenet_model_card``).
    opset : int, default 17
    """
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:  # pragma: no cover - depends on the installation
        raise WedgeNetError(
            "ONNX export needs the onnx package: pip install 'wedgenet[export]'"
        ) from None
    layers = as_layer_list(network)
    np_dtype = np.float32 if dtype == "float32" else np.float64
    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.DOUBLE
    nodes = []
    inits = []
    current = "X"
    for i, (W, b) in enumerate(layers):
        w_name, b_name = f"W{i + 1}", f"b{i + 1}"
        inits.append(numpy_helper.from_array(np.asarray(W, dtype=np_dtype), w_name))
        inits.append(numpy_helper.from_array(np.asarray(b, dtype=np_dtype).reshape(-1), b_name))
        nodes.append(helper.make_node("MatMul", [current, w_name], [f"mm{i + 1}"]))
        last = i == len(layers) - 1
        out = "scores" if last else f"pre{i + 1}"
        nodes.append(helper.make_node("Add", [f"mm{i + 1}", b_name], [out]))
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"a{i + 1}"]))
            current = f"a{i + 1}"
    c = int(np.asarray(layers[-1][1]).reshape(-1).shape[0])
    d = int(np.asarray(layers[0][0]).shape[0])
    graph_out = "scores"
    width = c
    if output == "probabilities":
        if loss == "logistic" and c == 1:
            nodes.append(helper.make_node("Sigmoid", ["scores"], ["p1"]))
            one = numpy_helper.from_array(np.ones((1, 1), dtype=np_dtype), "one")
            inits.append(one)
            nodes.append(helper.make_node("Sub", ["one", "p1"], ["p0"]))
            nodes.append(helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1))
            width = 2
        elif loss == "softmax":
            nodes.append(helper.make_node("Softmax", ["scores"], ["probabilities"], axis=1))
        else:
            raise WedgeNetError(
                f"probabilities need loss='logistic' (one output) or 'softmax', got loss={loss!r} "
                f"with {c} outputs"
            )
        graph_out = "probabilities"
    elif output != "scores":
        raise WedgeNetError(f"output must be 'scores' or 'probabilities', got {output!r}")
    graph = helper.make_graph(
        nodes,
        "wedgenet",
        [helper.make_tensor_value_info("X", elem, ["batch", d])],
        [helper.make_tensor_value_info(graph_out, elem, ["batch", width])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, producer_name="wedgenet", opset_imports=[helper.make_opsetid("", opset)]
    )
    if card is not None:
        helper.set_model_props(model, {MODEL_CARD_KEY: json.dumps(card, allow_nan=False)})
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
