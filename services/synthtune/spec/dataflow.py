"""Where a pipeline sends the records' text: every model endpoint it calls, and whether that is outside.

The run record keeps this list and the report prints it, so whoever reads a report knows which
services saw the plant's records. An endpoint counts as in-cluster when its host is loopback, a
private address, or a cluster DNS name (no dot, or ending in .svc / .cluster.local / .internal).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlparse

from synthtune.spec.pipeline import PipelineSpec

OPENAI_DEFAULT = "https://api.openai.com/v1"
_CLUSTER_SUFFIXES = (".svc", ".svc.cluster.local", ".cluster.local", ".internal", ".local")


def is_external(base_url: str) -> bool:
    """Whether an endpoint leaves the cluster (or the machine), judged by its host name."""
    host = (urlparse(base_url).hostname or "").lower()
    if not host or "." not in host or host == "localhost" or host.endswith(_CLUSTER_SUFFIXES):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return not (address.is_private or address.is_loopback or address.is_link_local)


def _endpoint(role: str, backend: str, model: str, base_url: str | None) -> dict[str, Any]:
    if backend != "openai":
        return {"role": role, "backend": backend, "model": model, "endpoint": "in process", "external": False}
    url = base_url or OPENAI_DEFAULT
    return {"role": role, "backend": backend, "model": model, "endpoint": url, "external": is_external(url)}


def data_destinations(spec: PipelineSpec) -> list[dict[str, Any]]:
    """Every model endpoint the pipeline sends record text to, in stage order."""
    teacher = spec.generate.teacher
    out = [_endpoint("teacher (generate)", teacher.backend, teacher.model, teacher.base_url)]
    if spec.prepare.translate is not None:
        out.insert(0, _endpoint("translator (prepare)", teacher.backend, teacher.model, teacher.base_url))
    ev = spec.evaluate
    if ev.backend == "openai":
        out.append(_endpoint("answers (evaluate)", "openai", spec.train.base_model, ev.base_url))
    if ev.judge.enabled:
        out.append(_endpoint("judge (evaluate)", ev.judge.backend, ev.judge.model, ev.judge.base_url))
    return out
