"""Kubernetes objects the controller submits: one Job per stage attempt, or a KubeRay RayJob.

Pure functions of the controller config and the attempt, so tests validate exactly what a
cluster would receive (``kubernetes-validate --strict``).
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from synthtune.controller.config import KubernetesConfig
from synthtune.errors import EXIT_BAD_INPUT
from synthtune.spec.graph import BY_KIND

RUN_LABEL = "synthtune.io/run"
STAGE_LABEL = "synthtune.io/stage"
RUN_ANNOTATION = "synthtune.io/run-id"
STAGE_ANNOTATION = "synthtune.io/stage-name"
REQUEST_ANNOTATION = "synthtune.io/request"
OBJECT_LABEL = "synthtune.io/object"  # on every pod template: selects the pods of one Job or RayJob
# KubeRay refuses RayJob names longer than 47 characters (it appends 6 to name the RayCluster);
# Job names must stay under 63 anyway (the job-name label of their pods).
MAX_NAME = 47


def label_value(text: str) -> str:
    """``text`` as a valid label value: at most 63 of [A-Za-z0-9._-], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]+", ".", text)
    if len(value) > 63:
        value = value[:52] + "." + hashlib.sha256(text.encode()).hexdigest()[:10]
    return value.strip("._-") or "x"


def object_name(run_id: str, stage: str, attempt: int) -> str:
    """A DNS-1035 name of at most MAX_NAME characters for one stage attempt, stable across controller restarts."""
    kind, _, method = stage.partition(":")
    digest = hashlib.sha256(f"{run_id}/{stage}".encode()).hexdigest()[:10]
    head, tail = f"synthtune-{kind}", f"-{digest}-a{attempt}"
    room = max(0, MAX_NAME - len(head) - len(tail) - 1)
    slug = re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")[:room].strip("-")
    return "-".join(p for p in (head, slug) if p) + tail


def selector(run_id: str, stage: str | None = None) -> str:
    """Label selector of a run's objects (and of one stage's)."""
    parts = [f"{RUN_LABEL}={label_value(run_id)}"]
    if stage:
        parts.append(f"{STAGE_LABEL}={label_value(stage)}")
    return ",".join(parts)


def _labels(kind: str, run_id: str, stage: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "synthtune", "app.kubernetes.io/component": kind,
            "app.kubernetes.io/managed-by": "synthtune-controller", RUN_LABEL: label_value(run_id), STAGE_LABEL: label_value(stage)}


def _metadata(cfg: KubernetesConfig, name: str, kind: str, run_id: str, stage: str, request_uri: str) -> dict[str, Any]:
    # The platform's labels (a Kueue queue name) first: ours, which select the pods, win.
    return {"name": name, "namespace": cfg.namespace, "labels": {**cfg.labels, **_labels(kind, run_id, stage), OBJECT_LABEL: name},
            "annotations": {RUN_ANNOTATION: run_id, STAGE_ANNOTATION: stage, REQUEST_ANNOTATION: request_uri}}


def _template_metadata(cfg: KubernetesConfig, meta: dict[str, Any]) -> dict[str, Any]:
    return {"labels": {**cfg.pod_labels, **meta["labels"]}, "annotations": {**cfg.pod_annotations, **meta["annotations"]}}


def gpu_count(gpus: float) -> int:
    """Whole GPUs for a pod: Kubernetes cannot hand out half a device (0.5 per worker still takes one)."""
    return math.ceil(gpus) if gpus > 0 else 0


def command(kind: str, request_uri: str) -> list[str]:
    return ["python3", "-m", f"synthtune.{BY_KIND[kind].service}.job", "--request", request_uri]


def _container(cfg: KubernetesConfig, name: str, image: str, cmd: list[str] | None, gpus: float) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": cfg.cpu, "memory": cfg.memory}
    limits: dict[str, Any] = {"memory": cfg.memory}
    if gpu_count(gpus):
        # A quantity is a string: the client's models refuse a bare int (kubectl's YAML would coerce it).
        requests[cfg.gpu_resource] = limits[cfg.gpu_resource] = str(gpu_count(gpus))
    if cfg.ephemeral_storage:
        requests["ephemeral-storage"] = cfg.ephemeral_storage
    container: dict[str, Any] = {
        "name": name, "image": image, "imagePullPolicy": cfg.image_pull_policy,
        "env": [{"name": k, "value": v} for k, v in sorted(cfg.env.items())] + [dict(e) for e in cfg.extra_env],
        "resources": {"requests": requests, "limits": limits},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "cache", "mountPath": "/cache"},
                         {"name": "shm", "mountPath": "/dev/shm"}] + [dict(m) for m in cfg.extra_volume_mounts],
    }
    if cmd:
        container["command"] = cmd
    if cfg.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in cfg.env_from_secrets]
    return container


def pod_spec(cfg: KubernetesConfig, containers: list[dict[str, Any]], gpus: float, restart: str = "Never") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "restartPolicy": restart, "serviceAccountName": cfg.service_account, "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": cfg.tmp_size}}, {"name": "cache", "emptyDir": {"sizeLimit": cfg.cache_size}},
                    # PyTorch data loaders and NCCL need more shared memory than a container's default.
                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm_size}}]
                   + [dict(v) for v in cfg.extra_volumes],
    }
    if gpu_count(gpus):  # only GPU work goes to the (scarce, tainted) GPU nodes
        spec["nodeSelector"] = dict(cfg.node_selector)
        spec["tolerations"] = [dict(t) for t in cfg.tolerations]
        if cfg.affinity:
            spec["affinity"] = dict(cfg.affinity)
        if cfg.topology_spread_constraints:
            spec["topologySpreadConstraints"] = [dict(t) for t in cfg.topology_spread_constraints]
    if cfg.priority_class_name:
        spec["priorityClassName"] = cfg.priority_class_name
    if cfg.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in cfg.image_pull_secrets]
    return spec


def job_manifest(cfg: KubernetesConfig, *, name: str, run_id: str, stage: str, request_uri: str,
                 gpus: float | None = None) -> dict[str, Any]:
    """The batch/v1 Job of one stage attempt (``gpus`` defaults to the config's count for its kind)."""
    kind = stage.partition(":")[0]
    gpus = cfg.gpus.get(kind, 0) if gpus is None else gpus
    meta = _metadata(cfg, name, kind, run_id, stage, request_uri)
    container = _container(cfg, kind, cfg.image(kind), command(kind, request_uri), gpus)
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {
            "backoffLimit": cfg.backoff_limit, "activeDeadlineSeconds": cfg.active_deadline_s,
            "ttlSecondsAfterFinished": cfg.ttl_after_finished_s,
            # A bad request fails at once; a drained or preempted node is not the work's fault.
            "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": kind, "operator": "In", "values": [EXIT_BAD_INPUT]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]},
            "template": {"metadata": _template_metadata(cfg, meta), "spec": pod_spec(cfg, [container], gpus)},
        },
    }


def rayjob_manifest(cfg: KubernetesConfig, *, name: str, run_id: str, stage: str, request_uri: str,
                    workers: int, gpus_per_worker: float) -> dict[str, Any]:
    """A ray.io/v1 RayJob: a RayCluster of ``workers`` GPU workers running the training entry point."""
    kind = stage.partition(":")[0]
    image = cfg.image(kind)
    meta = _metadata(cfg, name, kind, run_id, stage, request_uri)
    head = _container(cfg, "ray-head", image, None, 0)  # KubeRay starts Ray in its containers
    head["resources"] = {"requests": {"cpu": cfg.ray.head_cpu, "memory": cfg.ray.head_memory},
                         "limits": {"memory": cfg.ray.head_memory}}
    head["ports"] = [{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
                     {"containerPort": 10001, "name": "client"}]
    worker = _container(cfg, "ray-worker", image, None, gpus_per_worker)
    # KubeRay runs `ray job submit` in a pod of this template (the default one would have no security
    # context, which a namespace enforcing the restricted Pod Security Standard rejects); no command:
    # KubeRay sets it.
    submitter = _container(cfg, "ray-job-submitter", image, None, 0)
    submitter["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    template_meta = _template_metadata(cfg, meta)
    return {
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": meta,
        "spec": {
            "entrypoint": " ".join(command(kind, request_uri)),
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": cfg.ttl_after_finished_s,
            "activeDeadlineSeconds": cfg.active_deadline_s,
            "backoffLimit": cfg.backoff_limit,
            "submissionMode": "K8sJobMode",
            "submitterPodTemplate": {"metadata": template_meta, "spec": pod_spec(cfg, [submitter], 0)},
            "rayClusterSpec": {
                "rayVersion": cfg.ray.ray_version,
                "headGroupSpec": {"rayStartParams": {"num-gpus": "0"},
                                  "template": {"metadata": template_meta, "spec": pod_spec(cfg, [head], 0, restart="Always")}},
                "workerGroupSpecs": [{
                    "groupName": "gpu-workers", "replicas": workers, "minReplicas": workers, "maxReplicas": workers,
                    "rayStartParams": {},
                    "template": {"metadata": template_meta, "spec": pod_spec(cfg, [worker], gpus_per_worker, restart="Always")},
                }],
            },
        },
    }
