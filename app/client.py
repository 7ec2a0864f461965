"""A small typed Python client for the wedgenet service (httpx)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np


class WedgenetError(RuntimeError):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class JobFailed(WedgenetError):
    pass


def _npy(arr: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


class WedgenetClient:
    """``WedgenetClient(base_url, api_key)``; every method returns decoded JSON."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                 headers={"X-API-Key": api_key}, transport=transport)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> WedgenetClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _check(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except Exception:
                detail = r.text
            raise WedgenetError(r.status_code, detail)
        if r.status_code == 204 or not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.content

    # datasets
    def upload_dataset(self, X: Any, y: Any, name: str | None = None) -> dict[str, Any]:
        files = {"X": ("X.npy", _npy(X)), "y": ("y.npy", _npy(y))}
        data = {"name": name} if name else None
        return self._check(self.http.post("/datasets", files=files, data=data))  # type: ignore[no-any-return]

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/datasets/{dataset_id}"))  # type: ignore[no-any-return]

    def download_dataset(self, dataset_id: str) -> dict[str, np.ndarray]:
        data = self._check(self.http.get(f"/datasets/{dataset_id}/download"))
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def delete_dataset(self, dataset_id: str) -> None:
        self._check(self.http.delete(f"/datasets/{dataset_id}"))

    def upload_weights(self, layers: list[tuple[Any, Any]], dataset_id: str | None = None,
                       name: str | None = None) -> dict[str, Any]:
        arrays = {}
        for i, (W, b) in enumerate(layers, start=1):
            arrays[f"W{i}"], arrays[f"b{i}"] = np.asarray(W), np.asarray(b)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        data = {k: v for k, v in (("dataset_id", dataset_id), ("name", name)) if v}
        return self._check(self.http.post(  # type: ignore[no-any-return]
            "/weights", files={"file": ("weights.npz", buf.getvalue())}, data=data))

    def upload_state_dict(self, state_dict: dict[str, Any], dataset_id: str | None = None,
                          name: str | None = None,
                          layer_names: list[str] | None = None) -> dict[str, Any]:
        """Upload a PyTorch-style ``state_dict`` (``0.weight`` of shape (out, in), ``0.bias``,
        ...; tensors or arrays) as ``.safetensors``."""
        from safetensors.numpy import save

        arrays = {}
        for key, value in state_dict.items():
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            arrays[str(key)] = np.ascontiguousarray(value)
        data = {k: v for k, v in (("dataset_id", dataset_id), ("name", name)) if v}
        if layer_names:
            data["layer_names"] = ",".join(layer_names)
        return self._check(self.http.post(  # type: ignore[no-any-return]
            "/weights", files={"file": ("weights.safetensors", save(arrays))}, data=data))

    # jobs
    def submit(self, dataset_id: str, *, kind: str = "solve", weights_id: str | None = None,
               idempotency_key: str | None = None, **params: Any) -> dict[str, Any]:
        """Queue a job: ``kind="solve"`` (params of ``wedgenet.solve`` plus ``scan_parts``,
        ``warm_start``, ``l2_bound``) or ``kind="polish"`` with ``weights_id``."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body: dict[str, Any] = {"kind": kind, "dataset_id": dataset_id, "params": params}
        if weights_id is not None:
            body["weights_id"] = weights_id
        return self._check(self.http.post("/jobs", json=body, headers=headers))  # type: ignore[no-any-return]

    def polish(self, dataset_id: str, weights_id: str, **params: Any) -> dict[str, Any]:
        """Queue a polish of an uploaded weight set (params of ``wedgenet.polish``)."""
        return self.submit(dataset_id, kind="polish", weights_id=weights_id, **params)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/jobs/{job_id}"))  # type: ignore[no-any-return]

    def jobs(self, **filters: Any) -> dict[str, Any]:
        return self._check(self.http.get("/jobs", params=filters))  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._check(self.http.post(f"/jobs/{job_id}/cancel"))  # type: ignore[no-any-return]

    def delete_job(self, job_id: str) -> None:
        """Delete a finished job and its network (HTTP 409 while it is queued or running)."""
        self._check(self.http.delete(f"/jobs/{job_id}"))

    def wait(self, job_id: str, timeout: float = 300.0,
             on_progress: Callable[[dict[str, Any]], None] | None = None,
             poll: float = 0.2, raise_on_failure: bool = True) -> dict[str, Any]:
        """Poll until the job is terminal; returns the final job (raises JobFailed if it did
        not succeed and ``raise_on_failure``)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["state"] in ("succeeded", "failed", "cancelled"):
                if raise_on_failure and job["state"] != "succeeded":
                    raise JobFailed(200, job.get("error") or job["state"])
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")
            time.sleep(poll)

    # networks
    def networks(self, *, include_neurons: bool = False, **params: Any) -> dict[str, Any]:
        """One page of network briefs (``limit``, ``offset``); neurons only when asked for."""
        if include_neurons:
            params["include"] = "neurons"
        return self._check(self.http.get("/networks", params=params))  # type: ignore[no-any-return]

    def network(self, network_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/networks/{network_id}"))  # type: ignore[no-any-return]

    def delete_network(self, network_id: str) -> None:
        self._check(self.http.delete(f"/networks/{network_id}"))

    def predict(self, network_id: str, X: Any, *, full: bool = False) -> Any:
        """The raw outputs as an array; ``full=True``: the whole response (``outputs`` and,
        for classifiers, ``labels``, ``classes`` and ``probabilities``)."""
        body = {"X": np.asarray(X, dtype=float).tolist()}
        out = self._check(self.http.post(f"/networks/{network_id}/predict", json=body))
        return out if full else np.asarray(out["outputs"], dtype=float)

    def export(self, network_id: str, format: str = "npz", **params: Any) -> Any:
        """``npz``, ``safetensors`` or ``onnx`` bytes (``output="probabilities"`` for ONNX),
        or ``card``: the model card as a dict."""
        return self._check(self.http.get(
            f"/networks/{network_id}/export", params={"format": format, **params}))

    def plot(self, network_id: str, format: str = "png", neuron: int | None = None) -> bytes:
        """PNG or SVG bytes of a network on 2-D inputs (``neuron``: highlight it)."""
        params: dict[str, Any] = {"format": format}
        if neuron is not None:
            params["neuron"] = neuron
        return self._check(self.http.get(  # type: ignore[no-any-return]
            f"/networks/{network_id}/plot", params=params))

    def neurons(self, sample: int, **params: Any) -> dict[str, Any]:
        return self._check(self.http.get(  # type: ignore[no-any-return]
            "/neurons", params={"sample": sample, **params}))
