"""The controller's own configuration (`--config` / $SYNTHTUNE_CONTROLLER_CONFIG).

Which runner executes each stage kind, where the stage services are, how GPU Jobs look and
whether replicas elect a leader. The Helm chart renders this file from its values; the
embedded default runs every stage in process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from synthtune.errors import InvalidInput
from synthtune.spec.graph import RUNNER_KINDS

CONFIG_ENV = "SYNTHTUNE_CONTROLLER_CONFIG"
RunnerName = Literal["inprocess", "grpc", "kubernetes"]
# A Kubernetes quantity: `cpu: 8` in YAML is as good as `cpu: "8"`.
Quantity = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryConfig(_Model):
    max_attempts: int = Field(default=3, ge=1, description="Attempts per stage for retryable failures (1: no retry).")
    backoff_s: float = Field(default=2.0, ge=0, description="First retry delay; doubles with each attempt, plus a random jitter of up to this much.")
    max_backoff_s: float = Field(default=300.0, ge=0, description="Longest delay between two attempts.")


class LeaderConfig(_Model):
    lease: bool = Field(default=False, description="Elect one active controller through a coordination.k8s.io Lease.")
    name: str = Field(default="synthtune-controller", description="Name of the Lease object.")
    namespace: str | None = Field(default=None, description="Namespace of the Lease (default: kubernetes.namespace).")
    duration_s: float = Field(default=15.0, gt=0, description="A leader that has not renewed for this long is replaced.")
    renew_s: float = Field(default=5.0, gt=0, description="How often the leader renews the Lease.")

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> LeaderConfig:
        if self.renew_s >= self.duration_s:
            raise ValueError(f"leader.renew_s ({self.renew_s}) must be shorter than leader.duration_s ({self.duration_s})")
        return self


class RayConfig(_Model):
    enabled: Literal["auto", "always", "never"] = Field(
        default=        "auto", description="Training with more than one worker becomes a KubeRay RayJob: auto (when the ray.io CRDs are installed), always, never.")
    ray_version: str = Field(default="2.60.0", description="Ray version of the trainer image, for the RayCluster spec.")
    head_cpu: Quantity = Field(default="2", description="CPU request of the Ray head pod.")
    head_memory: Quantity = Field(default="8Gi", description="Memory request of the Ray head pod.")


class KubernetesConfig(_Model):
    namespace: str = Field(default="default", description="Namespace the stage Jobs run in.")
    images: dict[str, str] = Field(default_factory=dict, description="Image per stage kind (prepare, generate, train, evaluate).")
    gpus: dict[str, int] = Field(default_factory=lambda: {"generate": 1, "train": 1, "evaluate": 1},
                                 description="GPUs per Job and stage kind; 0 or absent: a CPU Job.")
    gpu_resource: str = Field(default="nvidia.com/gpu", description="Extended resource name of a GPU.")
    node_selector: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                                          description="Node selector of GPU Jobs (A100 nodes as GPU feature discovery labels them).")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        description="Tolerations of GPU Jobs.")
    cpu: Quantity = Field(default="8", description="CPU request of a Job pod.")
    memory: Quantity = Field(default="64Gi", description="Memory request and limit of a Job pod.")
    backoff_limit: int = Field(default=3, ge=0, description="Pod retries of a Job for retryable failures.")
    active_deadline_s: int = Field(default=86400, ge=1, description="A Job running longer than this fails.")
    ttl_after_finished_s: int = Field(default=86400, ge=0, description="Kubernetes deletes a finished Job this long after it ended.")
    schedule_timeout_s: float = Field(default=900, gt=0, description="Fail a stage whose pod stays unschedulable this long.")
    delete_on_success: bool = Field(default=True, description="Delete a Job as soon as it succeeded.")
    service_account: str = Field(default="synthtune-job", description="ServiceAccount of the Job pods (no Role, no token).")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of the Job containers.")
    env_from_secrets: list[str] = Field(default_factory=list, description="Secrets whose keys become the Job containers' environment.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Image pull Secrets of the Job pods.")
    poll_s: float = Field(default=2.0, gt=0, description="How often pod states are checked while a Job waits or runs.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(default="IfNotPresent", description="Pull policy of the Job containers.")
    tmp_size: Quantity = Field(default="20Gi", description="Size limit of the Job pods' /tmp emptyDir.")
    cache_size: Quantity = Field(default="100Gi", description="Size limit of the /cache emptyDir (base models streamed from the store, converted models).")
    shm_size: Quantity = Field(default="16Gi", description="Size limit of the in-memory /dev/shm.")
    ephemeral_storage: Quantity | None = Field(default=None, description="ephemeral-storage request of a Job container (the scratch volumes live there).")
    affinity: dict[str, Any] = Field(default_factory=dict, description="Affinity of GPU Job pods.")
    topology_spread_constraints: list[dict[str, Any]] = Field(default_factory=list, description="topologySpreadConstraints of GPU Job pods.")
    priority_class_name: str | None = Field(default=None, description="PriorityClass of the Job pods.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels on the Jobs and their pods (e.g. kueue.x-k8s.io/queue-name).")
    pod_labels: dict[str, str] = Field(default_factory=dict, description="Labels on the Job pods only.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, description="Annotations on the Job pods.")
    extra_env: list[dict[str, Any]] = Field(default_factory=list, description="More env entries (Kubernetes EnvVar) of the Job containers.")
    extra_volumes: list[dict[str, Any]] = Field(default_factory=list, description="More volumes of the Job pods.")
    extra_volume_mounts: list[dict[str, Any]] = Field(default_factory=list, description="More volume mounts of the Job containers.")
    ray: RayConfig = Field(default_factory=RayConfig, description="KubeRay RayJobs for multi-node training.")

    def image(self, kind: str) -> str:
        try:
            return self.images[kind]
        except KeyError:
            raise InvalidInput(f"controller config: kubernetes.images has no image for the {kind!r} stage "
                               f"(has: {', '.join(sorted(self.images)) or 'none'})") from None


class ControllerConfig(_Model):
    runners: dict[str, RunnerName] = Field(default_factory=dict,
                                           description="Runner per stage kind: inprocess (default), grpc or kubernetes.")
    services: dict[str, str] = Field(default_factory=dict, description="host:port of the stage service per stage kind run by grpc "
                                                                      "(the bearer token is $SYNTHTUNE_AUTH_TOKEN).")
    services_tls_ca: str | None = Field(default=None, description="PEM of the CA (or certificate) of stage services that serve TLS.")
    service_base_dir: str | None = Field(default=None, description="Folder relative source paths resolve against in the services (a mounted volume).")
    allow_external_endpoints: bool = Field(default=True, description="Accept runs whose teacher, judge or answer endpoint is outside "
                                                                       "the cluster (records leave it); the chart sets teacher.allowExternal.")
    max_concurrent_runs: int = Field(default=4, ge=1, description="Runs executing at once; more wait as pending.")
    max_parallel_stages: int = Field(default=1, ge=1, description="Stages of one run executing at once.")
    poll_s: float = Field(default=2.0, gt=0, description="How often the store is checked for new runs and cancel requests.")
    heartbeat_s: float = Field(default=30.0, gt=0, description="How often an executing run's record is touched, even when nothing happens.")
    stale_after_s: float = Field(default=120.0, gt=0, description="A running run whose record was not touched for this long has lost "
                                                                  "its controller (or CLI): the leader continues it.")
    retry: RetryConfig = Field(default_factory=RetryConfig, description="Retries of retryable stage failures.")
    leader: LeaderConfig = Field(default_factory=LeaderConfig, description="Leader election between replicas.")
    kubernetes: KubernetesConfig = Field(default_factory=KubernetesConfig, description="GPU Jobs.")

    @model_validator(mode="after")
    def _consistent(self) -> ControllerConfig:
        unknown = sorted(set(self.runners) - set(RUNNER_KINDS))
        if unknown:
            raise ValueError(f"runners: unknown stage kind(s) {', '.join(unknown)} (known: {', '.join(RUNNER_KINDS)})")
        missing = [k for k, r in self.runners.items() if r == "grpc" and not self.services.get(k)]
        if missing:
            raise ValueError(f"runners: {', '.join(missing)} run by grpc but services has no host:port for them")
        return self

    def runner(self, kind: str) -> RunnerName:
        return self.runners.get(kind, "inprocess")

    def lease_namespace(self) -> str:
        return self.leader.namespace or self.kubernetes.namespace


def load_config(path: str | Path | None = None) -> ControllerConfig:
    """The config at ``path`` (or $SYNTHTUNE_CONTROLLER_CONFIG); the embedded defaults without either."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return ControllerConfig()
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    file = Path(path)
    if not file.is_file():
        raise InvalidInput(f"controller config {file}: no such file")
    try:
        data = YAML(typ="safe").load(file.read_text(encoding="utf-8")) or {}
    except YAMLError as exc:
        raise InvalidInput(f"controller config {file}: not valid YAML: {exc}") from None
    try:
        return ControllerConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()]
        raise InvalidInput(f"controller config {file}: {len(problems)} problem(s)", problems) from None
