"""Where a pipeline sends the records' text: every model endpoint it calls, and whether that is outside.

The run record keeps this list and the report prints it, so whoever reads a report knows which
services saw the plant's records. An endpoint counts as in-cluster when its host is a loopback,
private or link-local address, or a cluster DNS name (no dot, or ending in .svc / .cluster.local /
.internal / .local).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlparse

from synthtune.spec.pipeline import PipelineSpec

OPENAI_DEFAULT = "https://api.openai.com/v1"
_CLUSTER_SUFFIXES = (".svc", ".svc.cluster.local", ".cluster.local", ".internal", ".local")
# Private (RFC 1918, IPv6 unique-local), loopback and link-local: named here rather than taken from
# ipaddress's is_private, whose list (test nets, reserved blocks) varies between Python versions.
_IN_CLUSTER_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10"))


def is_external(base_url: str) -> bool:
    """Whether an endpoint leaves the cluster (or the machine), judged by its host (the chart's synthtune.inClusterURL agrees)."""
    host = (urlparse(base_url).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return not (not host or "." not in host or host.endswith(_CLUSTER_SUFFIXES))
    return not any(address in network for network in _IN_CLUSTER_NETWORKS)


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
