"""Runs a stage as a Kubernetes Job (or a KubeRay RayJob for multi-node training).

One attempt: write the request to the store, create the Job, watch it with the official
client until it ends, read the outcome the Job wrote beside its request. A pod that stays
unschedulable (no free A100) or cannot pull its image, or a Job that gets no pod at all (a
quota, Pod Security admission), fails the stage with Kubernetes' own reason once
``schedule_timeout_s`` has passed, instead of waiting forever. A cancelled stage deletes its
Job. The Job's name is kept in the stage's handle while it runs, so a restarted controller
follows the Job already running instead of submitting another; once the Job has ended the
handle is cleared, so a retry submits a new one. API server hiccups while a Job runs are
ridden out for ``API_GRACE_S``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from synthtune.controller.config import KubernetesConfig
from synthtune.controller.manifests import (
    OBJECT_LABEL,
    job_manifest,
    object_name,
    rayjob_manifest,
    selector,
)
from synthtune.controller.runner import StageTask
from synthtune.errors import (
    EXIT_BAD_INPUT,
    Cancelled,
    InvalidInput,
    NotFound,
    PermanentError,
    RetryableError,
    StageSkipped,
    SynthtuneError,
)
from synthtune.progress import Progress
from synthtune.spec.graph import BY_KIND
from synthtune.store import ArtifactRef, Store
from synthtune.store.requests import result_key, write_request

log = logging.getLogger("synthtune.controller.kube")
RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayjobs"
# Waiting reasons that do not clear up by themselves; reported once schedule_timeout_s has passed.
# A Job runs on while the API server is away (a control-plane upgrade): watching it tolerates this
# much of failing API calls before the attempt fails (retryable).
API_GRACE_S = 300.0
STUCK_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}


def api_client() -> Any:
    """A client for this pod's cluster (in-cluster service account), else the local kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as exc:
            raise InvalidInput(f"no Kubernetes cluster to submit Jobs to: not in a pod and no kubeconfig ({exc})") from None
    return client.ApiClient()


class _Gone(RetryableError):
    """The Job or RayJob was deleted under a running attempt: the next attempt submits a new one."""


def _api_error(exc: Exception, what: str) -> SynthtuneError:
    """A Kubernetes API failure as a domain error: server and network faults are retryable."""
    status = getattr(exc, "status", None)
    if isinstance(exc, (ValueError, TypeError)):  # the client's own models refused what was sent or received
        return PermanentError(f"{what}: the Kubernetes client refused the object: {exc}")
    if status in (401, 403):
        return PermanentError(f"{what}: the controller's ServiceAccount may not do this ({status} {getattr(exc, 'reason', '')}): "
                              "check the Role of the chart's controller")
    if status == 422 or status == 400:
        return InvalidInput(f"{what}: Kubernetes refused the object: {getattr(exc, 'body', exc)}")
    if status is None or status >= 500 or status == 429:
        return RetryableError(f"{what}: Kubernetes API unavailable: {exc}")
    return SynthtuneError(f"{what}: {status} {getattr(exc, 'reason', exc)}")


def _condition(conditions: list[Any] | None, kind: str) -> Any:
    for c in conditions or []:
        ctype = c.get("type") if isinstance(c, dict) else c.type
        cstatus = c.get("status") if isinstance(c, dict) else c.status
        if ctype == kind and cstatus == "True":
            return c
    return None


class KubernetesRunner:
    def __init__(self, cfg: KubernetesConfig, api: Any | None = None) -> None:
        self.cfg = cfg
        self._api = api
        self._ray: bool | None = None

    @property
    def api(self) -> Any:
        if self._api is None:
            self._api = api_client()
        return self._api

    def _clients(self) -> tuple[Any, Any, Any]:
        from kubernetes import client

        return client.BatchV1Api(self.api), client.CoreV1Api(self.api), client.CustomObjectsApi(self.api)

    def ray_available(self) -> bool:
        """Whether RayJobs can be submitted: configured so, or (auto) the ray.io API group is served."""
        if self.cfg.ray.enabled != "auto":
            return self.cfg.ray.enabled == "always"
        if self._ray is None:
            from kubernetes import client

            try:
                groups = client.ApisApi(self.api).get_api_versions().groups or []
                self._ray = any(g.name == RAY_GROUP and any(v.version == RAY_VERSION for v in g.versions) for g in groups)
            except Exception as exc:  # noqa: BLE001 - without discovery, plain Jobs still work
                log.warning("API discovery failed, training runs as a plain Job: %s", exc)
                return False
        return self._ray

    # one attempt --------------------------------------------------------------------------
    def run(self, task: StageTask, store: Store, progress: Progress) -> ArtifactRef:
        kind = task.kind
        scaling = task.spec.train.scaling
        name = task.handle.get("job")
        if name:  # submitted before a controller restart: follow that Job, whatever the config says now
            rayjob = task.handle.get("object") == "RayJob"
        else:
            rayjob = kind == "train" and scaling.workers > 1 and self.ray_available()
            name = object_name(task.run_id, task.stage, task.attempt)
        request_key = f"requests/{name}.json"
        outcome_key = result_key(request_key)
        if task.handle.get("job") and store.exists(request_key):
            request_uri = f"{store.uri}/{request_key}"  # the Job reads it: leave it as it was
            done = self._read_outcome(store, outcome_key)
            if done.get("result") or done.get("error_kind") == "skipped":  # it finished while no controller watched
                return self._outcome(task, store, name, rayjob, "succeeded", "", outcome_key)
        else:
            request = {"spec_yaml": task.spec_yaml, "base_dir": task.base_dir, "method": task.method, "run_id": task.run_id,
                       "stage": task.stage, "attempt": task.attempt,
                       "inputs": {k: v.to_dict() if v else None for k, v in task.inputs.items()}}
            request_uri = write_request(store, BY_KIND[kind].service, request, name=name)
        # Ray Train workers: gpus_per_worker 0 means the configured GPUs of a train Job, for each worker.
        per_worker = scaling.gpus_per_worker or self.cfg.gpus.get(kind, 0)
        if rayjob:
            manifest = rayjob_manifest(self.cfg, name=name, run_id=task.run_id, stage=task.stage, request_uri=request_uri,
                                       workers=scaling.workers, gpus_per_worker=per_worker)
        else:  # training: one pod with every worker's GPUs, Ray inside it
            gpus = scaling.workers * per_worker if kind == "train" else self.cfg.gpus.get(kind, 0)
            manifest = job_manifest(self.cfg, name=name, run_id=task.run_id, stage=task.stage, request_uri=request_uri, gpus=gpus)
        task.remember(job=name, object=manifest["kind"])
        self._create(manifest)
        progress.note(f"{manifest['kind']} {self.cfg.namespace}/{name} submitted")
        try:
            state, reason = self._follow(name, rayjob, progress)
        except Cancelled:
            self.delete(name, rayjob)
            self._forget(task)
            raise
        except (_Gone, PermanentError):  # deleted (by someone else, or because it could not start)
            self._forget(task)
            raise
        return self._outcome(task, store, name, rayjob, state, reason, outcome_key)

    @staticmethod
    def _forget(task: StageTask) -> None:
        """The attempt's Job has ended: a later attempt (a retry) must submit its own, not follow this one."""
        if task.handle.get("job") is not None:
            task.remember(job=None, object=None)

    @staticmethod
    def _read_outcome(store: Store, key: str) -> dict[str, Any]:
        try:
            outcome = store.get_json(key) if store.exists(key) else {}
        except SynthtuneError:
            raise
        except Exception as exc:  # noqa: BLE001 - the store may be away for a moment
            raise RetryableError(f"reading {store.uri}/{key}: {exc}") from None
        return outcome if isinstance(outcome, dict) else {}

    def _create(self, manifest: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        batch, _, custom = self._clients()
        name = manifest["metadata"]["name"]
        try:
            if manifest["kind"] == "RayJob":
                custom.create_namespaced_custom_object(RAY_GROUP, RAY_VERSION, self.cfg.namespace, RAY_PLURAL, manifest)
            else:
                batch.create_namespaced_job(self.cfg.namespace, manifest)
        except ApiException as exc:
            if exc.status == 409:
                log.info("%s %s exists already (a restarted controller): following it", manifest["kind"], name)
                return
            raise _api_error(exc, f"creating {manifest['kind']} {self.cfg.namespace}/{name}") from None
        except Exception as exc:  # noqa: BLE001 - connection errors from urllib3
            raise _api_error(exc, f"creating {manifest['kind']} {self.cfg.namespace}/{name}") from None

    def _job_state(self, obj: Any, rayjob: bool) -> tuple[str, str]:
        """("running" | "succeeded" | "failed", reason) of a Job or RayJob."""
        if rayjob:
            status = (obj or {}).get("status") or {}
            job_status, deployment = status.get("jobStatus", ""), status.get("jobDeploymentStatus", "")
            if job_status == "SUCCEEDED":
                return "succeeded", ""
            # Only the deployment status is final: after a FAILED job KubeRay may be Retrying (backoffLimit).
            if deployment in ("Failed", "ValidationFailed") or (deployment == "Complete" and job_status != "SUCCEEDED"):
                why = ": ".join(str(p) for p in (status.get("reason"), status.get("message")) if p)
                return "failed", why or job_status or deployment
            return "running", ""
        status = obj.status
        if status is None:
            return "running", ""
        if _condition(status.conditions, "Complete") or _condition(status.conditions, "SuccessCriteriaMet"):
            return "succeeded", ""
        failed = _condition(status.conditions, "Failed") or _condition(status.conditions, "FailureTarget")
        if failed is not None:
            return "failed", f"{failed.reason or 'Failed'}: {failed.message or ''}".strip(": ")
        return "running", ""

    def _follow(self, name: str, rayjob: bool, progress: Progress) -> tuple[str, str]:
        """Watch the Job until it ends; check its pods between watch windows."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        batch, core, custom = self._clients()
        ns = self.cfg.namespace
        stuck_since: float | None = None
        api_down_since: float | None = None
        error: SynthtuneError | None
        last_phase = ""
        while True:
            if progress.cancelled:
                raise Cancelled(f"{name} cancelled")
            try:
                window = max(1, int(self.cfg.poll_s))
                watcher = watch.Watch()  # type: ignore[no-untyped-call]
                if rayjob:
                    stream = watcher.stream(custom.list_namespaced_custom_object, RAY_GROUP, RAY_VERSION, ns, RAY_PLURAL,  # type: ignore[no-untyped-call]
                                            field_selector=f"metadata.name={name}", timeout_seconds=window)
                else:
                    stream = watcher.stream(batch.list_namespaced_job, ns, field_selector=f"metadata.name={name}",  # type: ignore[no-untyped-call]
                                            timeout_seconds=window)
                try:
                    for event in stream:
                        if event["type"] == "DELETED":
                            raise _Gone(f"{name} was deleted while it ran (by someone else, or the cluster)")
                        state, reason = self._job_state(event["object"], rayjob)
                        if state != "running":
                            return state, reason
                        if progress.cancelled:
                            break
                finally:
                    stream.close()  # hands the connection back at once
                # Between windows: is it there at all, and does a pod wait for something that will not come?
                obj = (custom.get_namespaced_custom_object(RAY_GROUP, RAY_VERSION, ns, RAY_PLURAL, name) if rayjob
                       else batch.read_namespaced_job(name, ns))
                state, reason = self._job_state(obj, rayjob)
                if state != "running":
                    return state, reason
                pods = core.list_namespaced_pod(ns, label_selector=self._pod_selector(name, rayjob)).items
            except ApiException as exc:
                if exc.status == 404:
                    raise _Gone(f"{name} disappeared while it ran (deleted, or its TTL passed)") from None
                if exc.status == 410:  # the watch expired (410 Gone): the next window starts afresh
                    continue
                error = _api_error(exc, f"watching {ns}/{name}")
            except (SynthtuneError, Cancelled):
                raise
            except Exception as exc:  # noqa: BLE001 - connection errors from urllib3
                error = _api_error(exc, f"watching {ns}/{name}")
            else:
                error = None
            if error is not None:
                api_down_since = api_down_since or time.monotonic()
                if not isinstance(error, RetryableError) or time.monotonic() - api_down_since > API_GRACE_S:
                    raise error
                log.warning("%s (the Job runs on; trying again)", error)
                progress.wait_cancelled(self.cfg.poll_s)
                continue
            api_down_since = None
            waiting, phase = self._pods_waiting(pods)
            if phase and phase != last_phase:
                last_phase = phase
                progress.note(f"{name}: {phase}")
            if not pods:  # e.g. refused by a ResourceQuota or Pod Security admission: only an Event says so
                waiting = "no pod was created for it"
            if waiting:
                stuck_since = stuck_since or time.monotonic()
                if time.monotonic() - stuck_since > self.cfg.schedule_timeout_s:
                    if not pods:
                        waiting += self._warning(name, "RayJob" if rayjob else "Job")
                    self.delete(name, rayjob)
                    raise PermanentError(f"{name} could not start for {self.cfg.schedule_timeout_s:g} s: {waiting}")
            else:
                stuck_since = None

    def _warning(self, name: str, kind: str) -> str:
        """The newest Warning Event of the object (" (reason: message)"), or where to look for it."""
        ns = self.cfg.namespace
        try:
            _, core, _ = self._clients()
            events = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name},type=Warning").items
            if events:
                ev = max(events, key=lambda e: str(e.last_timestamp or e.event_time or e.metadata.creation_timestamp or ""))
                return f" ({ev.reason}: {ev.message})"
        except Exception as exc:  # noqa: BLE001 - reading Events needs a permission the Role may not grant
            log.info("no events of %s: %s", name, exc)
        return f" (kubectl -n {ns} get events --field-selector involvedObject.name={name} shows why)"

    @staticmethod
    def _pod_selector(name: str, rayjob: bool) -> str:
        # KubeRay names the RayCluster (and labels its pods ray.io/cluster=) <name>-<random>, so a RayJob's
        # head, worker and submitter pods are found by the label of our own templates.
        return f"{OBJECT_LABEL}={name}" if rayjob else f"job-name={name}"

    @staticmethod
    def _pods_waiting(pods: list[Any]) -> tuple[str, str]:
        """(why a pod cannot start, or "", a one-line phase summary) of a Job's pods."""
        waiting, phases = "", []
        for pod in pods:
            status = pod.status
            if status is None:
                continue
            phases.append(f"pod {pod.metadata.name} {status.phase or 'Pending'}" + (f" on {pod.spec.node_name}" if pod.spec and pod.spec.node_name else ""))
            for c in status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                    waiting = f"pod {pod.metadata.name}: Unschedulable: {c.message or 'no node fits it'}"
            for cs in status.container_statuses or []:
                w = cs.state.waiting if cs.state else None
                if w is not None and w.reason in STUCK_REASONS:
                    waiting = f"container {cs.name} of pod {pod.metadata.name}: {w.reason}: {w.message or ''}".rstrip(": ")
        return waiting, "; ".join(phases)

    def _outcome(self, task: StageTask, store: Store, name: str, rayjob: bool, state: str, reason: str,
                 outcome_key: str) -> ArtifactRef:
        outcome = self._read_outcome(store, outcome_key)
        self._forget(task)
        if state == "succeeded" and (outcome.get("result") or outcome.get("error_kind") == "skipped"):
            if self.cfg.delete_on_success:
                self.delete(name, rayjob)
            if outcome.get("error_kind") == "skipped":
                raise StageSkipped(str(outcome.get("skipped") or "nothing to do"))
            return ArtifactRef(**outcome["result"])
        what = f"{task.stage}: {'RayJob' if rayjob else 'Job'} {self.cfg.namespace}/{name}"
        if state == "succeeded":  # its work is in the store's cache: another attempt only writes the result
            raise RetryableError(f"{what} succeeded but wrote no result to {store.uri}/{outcome_key}")
        message = outcome.get("error") or f"failed ({reason or 'no reason given'})"
        logs = self.failed_pod_logs(name, rayjob)
        detail = f"{message}" + (f"\n--- last lines of {logs[0]} ---\n{logs[1]}" if logs else "")
        kind = outcome.get("error_kind")
        if kind == "invalid_input":
            raise InvalidInput(detail)
        if kind == "not_found":
            raise NotFound(detail)
        if kind == "retryable":
            raise RetryableError(f"{what}: {detail}")
        if "DeadlineExceeded" in reason:
            raise PermanentError(f"{what} ran past activeDeadlineSeconds ({self.cfg.active_deadline_s} s): {detail}")
        if reason.startswith("ValidationFailed"):  # KubeRay refused the RayJob: another attempt would be refused too
            raise PermanentError(f"{what}: KubeRay refused it: {detail}")
        if outcome.get("exit_code") == EXIT_BAD_INPUT:  # a PermanentError of the stage: the Job did not retry it
            raise PermanentError(f"{what}: {detail}")
        raise SynthtuneError(f"{what}: {detail}")

    def failed_pod_logs(self, name: str, rayjob: bool, lines: int = 30) -> tuple[str, str] | None:
        """(pod name and how it ended, its last lines) of the newest failed pod, to put in the stage's message.

        For a RayJob that is the submitter pod, which follows the driver's log (`ray job logs --follow`)."""
        try:
            _, core, _ = self._clients()
            pods = core.list_namespaced_pod(self.cfg.namespace, label_selector=self._pod_selector(name, rayjob)).items
            failed = [p for p in pods if p.status and p.status.phase == "Failed"] or pods
            if not failed:
                return None
            pod = max(failed, key=lambda p: str(p.metadata.creation_timestamp or ""))
            container = pod.spec.containers[0].name if pod.spec and pod.spec.containers else None
            text = core.read_namespaced_pod_log(pod.metadata.name, self.cfg.namespace, container=container, tail_lines=lines)
            ended = [f"exit {t.exit_code}" + (f", {t.reason}" if t.reason else "")
                     for cs in (pod.status.container_statuses or []) if cs.state and (t := cs.state.terminated)]
            return pod.metadata.name + (f" ({'; '.join(ended)})" if ended else ""), str(text).rstrip()
        except Exception as exc:  # noqa: BLE001 - logs are a courtesy; the failure itself is reported anyway
            log.info("no logs of %s: %s", name, exc)
            return None

    # cleaning up ----------------------------------------------------------------------------
    def delete(self, name: str, rayjob: bool = False) -> None:
        from kubernetes.client.exceptions import ApiException

        batch, _, custom = self._clients()
        try:
            if rayjob:
                custom.delete_namespaced_custom_object(RAY_GROUP, RAY_VERSION, self.cfg.namespace, RAY_PLURAL, name,
                                                       propagation_policy="Background")
            else:
                batch.delete_namespaced_job(name, self.cfg.namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                log.warning("could not delete %s: %s", name, exc.reason)

    def cleanup(self, run_id: str) -> list[str]:
        """Delete every unfinished Job and RayJob of a run (it was cancelled or failed); returns their names.

        Finished ones hold no GPU any more: they stay for their logs until ttlSecondsAfterFinished."""
        batch, _, custom = self._clients()
        names = []
        try:
            for job in batch.list_namespaced_job(self.cfg.namespace, label_selector=selector(run_id)).items:
                if self._job_state(job, False)[0] == "running":
                    self.delete(job.metadata.name)
                    names.append(job.metadata.name)
            if self.ray_available():
                found = custom.list_namespaced_custom_object(RAY_GROUP, RAY_VERSION, self.cfg.namespace, RAY_PLURAL,
                                                             label_selector=selector(run_id))
                for obj in found.get("items", []):
                    if self._job_state(obj, True)[0] == "running":
                        self.delete(obj["metadata"]["name"], rayjob=True)
                        names.append(obj["metadata"]["name"])
        except Exception as exc:  # noqa: BLE001 - Jobs left behind still end by their TTL
            log.warning("could not clean up the Jobs of run %s: %s", run_id, exc)
        return names
