"""The Kubernetes Job / RayJob runner through the official client against the API double (kubeapi.py).

The Jobs "run" with the real Job entry point (synthtune.jobentry) in this process and the fake
stage functions of fakes.py, so requests and outcomes go through the store as in a cluster.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes import client

from synthtune.controller import Executor, RunBook
from synthtune.controller.config import ControllerConfig, KubernetesConfig
from synthtune.controller.kube import KubernetesRunner
from synthtune.controller.manifests import (
    RUN_ANNOTATION,
    RUN_LABEL,
    STAGE_LABEL,
    job_manifest,
    label_value,
    object_name,
    rayjob_manifest,
    selector,
)
from synthtune.controller.runner import StageTask
from synthtune.errors import Cancelled, InvalidInput, PermanentError, RetryableError, StageSkipped
from synthtune.progress import Progress
from synthtune.spec import load_spec_text
from synthtune.spec.graph import RUNNER_KINDS
from synthtune.store import Store, open_store

from .cluster import Cluster
from .fakes import SPEC, calls, make_stages, spec_yaml
from .kubeapi import JOBS, PODS, RAYJOBS

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33.0"  # as tests/deploy
IMAGES = {"prepare": "ghcr.io/synthtune/synthtune-generator:0.1.0", "generate": "ghcr.io/synthtune/synthtune-evaluator:0.1.0",
          "train": "ghcr.io/synthtune/synthtune-trainer:0.1.0", "evaluate": "ghcr.io/synthtune/synthtune-evaluator:0.1.0"}
RUN_ID = "fake-20250101-000000-abc123"
NOT_SCHEDULABLE = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available."


def config(**kw: Any) -> KubernetesConfig:
    base: dict[str, Any] = {"images": IMAGES, "poll_s": 0.2, "schedule_timeout_s": 5, "service_account": "synthtune-job",
                            "env": {"SYNTHTUNE_S3_ENDPOINT": "http://minio:9000"}, "env_from_secrets": ["synthtune-s3"]}
    return KubernetesConfig(**{**base, **kw})


def validate(obj: dict[str, Any]) -> None:
    problem = ""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problem = f"{obj['kind']}/{obj['metadata'].get('name')}: {exc.message} at {list(exc.path)}"
    if problem:
        pytest.fail(problem)


def as_pod(template: dict[str, Any], name: str) -> dict[str, Any]:
    """A pod template as the v1 Pod it becomes (kubernetes-validate has no RayJob schema)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {**copy.deepcopy(template.get("metadata", {})), "name": name},
            "spec": template["spec"]}


def stage_call(stages: dict[str, Any]) -> Any:
    """The stage function a Job entry point calls, here the fakes."""
    def call(spec: Any, inputs: Any, store: Any, progress: Any, request: dict[str, Any]) -> Any:
        kind = request["stage"].partition(":")[0]
        return stages[kind](spec, inputs, store, progress, **({"method": request["method"]} if request["method"] else {}))
    return call


def failing(exc: Exception) -> Any:
    def call(*args: Any) -> Any:
        print("loading records.csv")
        print("mapping columns")
        raise exc
    return call


@pytest.fixture
def kube():
    with Cluster() as k:
        yield k


@pytest.fixture
def background():
    """Run a callable in a thread; every Progress handed out is cancelled at the end so no thread stays."""
    pool = futures.ThreadPoolExecutor(4)
    started: list[Progress] = []

    def start(fn: Any, *args: Any) -> futures.Future[Any]:
        started.extend(a for a in args if isinstance(a, Progress))
        return pool.submit(fn, *args)

    yield start
    for p in started:
        p.cancel()
    pool.shutdown(wait=True, cancel_futures=True)


class Upstream:
    """A store with the prepared and synthetic artifacts a train stage reads, and its fake stages."""

    def __init__(self, store: Store, tmp: Path, text: str = SPEC, **fail: str) -> None:
        self.store, self.text, self.count = store, text, tmp / "calls.txt"
        self.stages = make_stages(self.count, fail=fail)
        self.spec = load_spec_text(text)
        self.prepared = self.stages["prepare"](self.spec, {}, store, Progress("prepare"))
        self.synthetic = self.stages["generate"](self.spec, {"prepared": self.prepared}, store, Progress("g"), method="record_qa")
        self.call = stage_call(self.stages)

    def task(self, stage: str = "train:record_qa", attempt: int = 1, handle: dict[str, Any] | None = None) -> StageTask:
        inputs = {"prepared": self.prepared, "synthetic": self.synthetic} if stage.startswith("train") else {"prepared": self.prepared}
        return StageTask(run_id=RUN_ID, stage=stage, spec=self.spec, spec_yaml=self.text, base_dir=None, inputs=inputs,
                         attempt=attempt, handle=dict(handle or {}))


@pytest.fixture
def up(file_store, tmp_path):
    return Upstream(file_store, tmp_path)


def job_name(stage: str = "train:record_qa", attempt: int = 1) -> str:
    return object_name(RUN_ID, stage, attempt)


# one stage attempt ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["file", "s3"])
def test_attempt_creates_a_valid_job_and_returns_its_artifact(kube, background, tmp_path, backend, request):
    store = open_store(str(tmp_path / "store") if backend == "file" else request.getfixturevalue("s3_store_uri"))
    up = Upstream(store, tmp_path)
    cfg = config()
    task = up.task()
    fut = background(KubernetesRunner(cfg, api=kube.api_client()).run, task, store, Progress(task.stage))
    name = job_name()
    assert kube.run_job(name, up.call) == 0
    ref = fut.result(timeout=20)

    assert ref.kind == "adapter" and store.open(ref).parents == [up.synthetic.id]
    (post,) = kube.called("POST", "/apis/batch/v1/namespaces/default/jobs")
    job = post.body  # exactly what the cluster received
    validate(job)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    gpu = {"nvidia.com/gpu": "1"}
    assert c["resources"]["limits"].items() >= gpu.items() and c["resources"]["requests"].items() >= gpu.items()
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (3, 86400, 86400)
    assert spec["podFailurePolicy"]["rules"] == [
        {"action": "FailJob", "onExitCodes": {"containerName": c["name"], "operator": "In", "values": [2]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"][RUN_LABEL] == label_value(RUN_ID) and meta["labels"][STAGE_LABEL] == "train.record_qa"
        assert meta["annotations"][RUN_ANNOTATION] == RUN_ID
    assert c["image"] == IMAGES["train"] and c["command"][:4] == ["python3", "-m", "synthtune.trainer.job", "--request"]
    assert c["command"][4] == f"{store.uri}/requests/{name}.json" and store.exists(f"requests/{name}.json")
    assert c["envFrom"] == [{"secretRef": {"name": "synthtune-s3"}}] and pod["serviceAccountName"] == "synthtune-job"
    assert [j["metadata"]["name"] for j in kube.list(JOBS, labelSelector=selector(RUN_ID, "train:record_qa"))] == []
    (delete,) = kube.called("DELETE", f"*/jobs/{name}")
    assert delete.query["propagationPolicy"] == "Background" and kube.list(PODS) == []  # its pods went with it


def test_bad_request_fails_at_once_with_the_stage_message_and_the_log_tail(kube, background, up):
    task = up.task()
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    assert kube.run_job(job_name(), failing(InvalidInput("records.csv:7: column 'Action' is empty"))) == 2
    with pytest.raises(InvalidInput) as err:
        fut.result(timeout=20)
    text = str(err.value)
    assert text.startswith("records.csv:7: column 'Action' is empty")
    (pod,) = kube.list(PODS)  # podFailurePolicy FailJob: no second pod
    assert f"--- last lines of {pod['metadata']['name']} (exit 2, Error) ---" in text and "mapping columns" in text
    assert "bad request: records.csv:7" in text  # what the entry point printed, from the pod's log
    job = kube.get(JOBS, job_name())
    assert job is not None and job["status"]["conditions"][-1]["reason"] == "PodFailurePolicy"  # kept for its logs
    assert "job" not in task.handle  # a later attempt submits a new Job


def test_a_job_with_nothing_to_do_skips_the_stage(kube, background, up):
    task = up.task()
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    assert kube.run_job(job_name(), failing(StageSkipped("no trainable examples among the 3 synthetic examples"))) == 0
    with pytest.raises(StageSkipped, match="no trainable examples"):
        fut.result(timeout=20)
    assert kube.called("DELETE", f"*/jobs/{job_name()}")  # it succeeded: deleted like any finished Job


def test_retryable_outcome_is_retryable_after_the_jobs_own_retries(kube, background, up):
    task = up.task()
    fut = background(KubernetesRunner(config(backoff_limit=1), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    assert kube.run_job(job_name(), failing(RetryableError("teacher busy (429)"))) == 75
    with pytest.raises(RetryableError, match=r"teacher busy \(429\)"):
        fut.result(timeout=20)
    assert len(kube.list(PODS)) == 2  # backoffLimit 1: the Job itself ran the pod twice


def test_deadline_exceeded_is_permanent(kube, background, up):
    task = up.task()
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    kube.wait_for(lambda: kube.get(JOBS, job_name()), what="the Job")
    kube.finish_job(job_name(), "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
    with pytest.raises(PermanentError) as err:
        fut.result(timeout=20)
    assert not isinstance(err.value, (RetryableError, InvalidInput))
    assert "activeDeadlineSeconds (86400 s)" in str(err.value) and "DeadlineExceeded" in str(err.value)


@pytest.mark.parametrize("state, reason", [
    ({"unschedulable": NOT_SCHEDULABLE}, "Unschedulable"),
    ({"waiting": ("ImagePullBackOff", 'Back-off pulling image "ghcr.io/synthtune/synthtune-trainer:0.1.0"')}, "ImagePullBackOff"),
])
def test_a_pod_that_cannot_start_fails_the_stage_with_the_kubernetes_reason(kube, background, up, state, reason):
    task = up.task()
    started = time.monotonic()
    fut = background(KubernetesRunner(config(schedule_timeout_s=0.5), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    kube.wait_for(lambda: kube.get(JOBS, job_name()), what="the Job")
    kube.job_pod(job_name(), **state)
    with pytest.raises(PermanentError) as err:
        fut.result(timeout=15)
    assert time.monotonic() - started < 8  # schedule_timeout_s 0.5 plus a few watch windows, not a hang
    text = str(err.value)
    assert reason in text and (NOT_SCHEDULABLE if "unschedulable" in state else "Back-off pulling image") in text
    assert kube.get(JOBS, job_name()) is None and kube.called("DELETE", f"*/jobs/{job_name()}")


@pytest.mark.parametrize("event", [True, False])
def test_a_job_whose_pod_is_refused_fails_with_the_reason(kube, background, up, event):
    refused = ('Error creating: pods "x" is forbidden: violates PodSecurity "restricted:latest": '
               'allowPrivilegeEscalation != false')
    task = up.task()
    fut = background(KubernetesRunner(config(schedule_timeout_s=0.5), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    kube.wait_for(lambda: kube.get(JOBS, job_name()), what="the Job")
    if event:
        kube.add_event(job_name(), "FailedCreate", refused)
    with pytest.raises(PermanentError) as err:
        fut.result(timeout=15)
    text = str(err.value)
    assert "no pod was created" in text
    assert (f"FailedCreate: {refused}" if event else f"kubectl -n default get events --field-selector involvedObject.name={job_name()}") in text
    assert kube.get(JOBS, job_name()) is None


def test_a_pod_that_waits_only_briefly_does_not_fail(kube, background, up):
    task = up.task()
    fut = background(KubernetesRunner(config(schedule_timeout_s=3), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    kube.wait_for(lambda: kube.get(JOBS, job_name()), what="the Job")
    pending = kube.job_pod(job_name(), unschedulable=NOT_SCHEDULABLE)
    kube.wait_for(lambda: kube.called("GET", "/api/v1/namespaces/default/pods"), what="a pod check")
    kube.delete(PODS, "default", pending["metadata"]["name"], None)  # the cluster autoscaler found a node
    assert kube.run_job(job_name(), up.call) == 0
    assert fut.result(timeout=20).kind == "adapter"


def test_api_server_hiccups_while_watching_do_not_fail_the_attempt(kube, background, up):
    task = up.task()
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    kube.wait_for(lambda: kube.get(JOBS, job_name()), what="the Job")
    jobs = "/apis/batch/v1/namespaces/default/jobs"
    kube.faults += [(jobs, 410), (jobs, 503), (f"{jobs}/*", 500), ("/api/v1/namespaces/default/pods", 429)]
    kube.wait_for(lambda: not kube.faults, what="the faults to be hit")
    assert kube.run_job(job_name(), up.call) == 0
    assert fut.result(timeout=20).kind == "adapter"
    assert len(kube.called("POST", jobs, status=201)) == 1


def test_cancel_deletes_the_job(kube, background, up):
    task, progress = up.task(), Progress("train:record_qa")
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, up.store, progress)
    kube.wait_for(lambda: kube.get(JOBS, job_name()), what="the Job")
    kube.job_pod(job_name(), phase="Running")
    progress.cancel()
    with pytest.raises(Cancelled):
        fut.result(timeout=10)
    (delete,) = kube.called("DELETE", f"/apis/batch/v1/namespaces/default/jobs/{job_name()}")
    assert delete.query["propagationPolicy"] == "Background"
    assert kube.get(JOBS, job_name()) is None and kube.list(PODS) == []


class ControllerDied(BaseException):
    pass


class DiesAfterSubmitting(KubernetesRunner):
    def _follow(self, *args: Any) -> Any:
        raise ControllerDied


@pytest.mark.parametrize("finished_meanwhile", [False, True])
def test_a_restarted_controller_follows_the_job_it_submitted(kube, background, up, finished_meanwhile):
    saved: dict[str, Any] = {}
    first = up.task(attempt=1)
    first.save = lambda: saved.update(copy.deepcopy(first.handle))  # the run record in the store
    with pytest.raises(ControllerDied):
        DiesAfterSubmitting(config(), api=kube.api_client()).run(first, up.store, Progress(first.stage))
    assert saved == {"job": job_name(), "object": "Job"}
    if finished_meanwhile:
        kube.run_job(job_name(), up.call)

    second = up.task(attempt=2, handle=saved)  # the executor counts the restart as a new attempt
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, second, up.store, Progress(second.stage))
    if not finished_meanwhile:
        kube.run_job(job_name(), up.call)
    assert fut.result(timeout=20).kind == "adapter"
    assert len(kube.called("POST", "*/jobs", status=201)) == 1
    assert {c.body["metadata"]["name"] for c in kube.called("POST", "*/jobs")} == {job_name()}
    assert calls(up.count).count("train:record_qa") == 1
    assert kube.get(JOBS, job_name()) is None


def test_cleanup_deletes_the_unfinished_jobs_of_the_run_and_no_other(kube, up):
    cfg = config()
    batch = client.BatchV1Api(kube.api_client())
    jobs = [(RUN_ID, "train:record_qa", 1), (RUN_ID, "evaluate", 2), (RUN_ID, "train:persona", 1), ("other-run", "train:record_qa", 1)]
    for run_id, stage, attempt in jobs:
        name = object_name(run_id, stage, attempt)
        batch.create_namespaced_job("default", job_manifest(cfg, name=name, run_id=run_id, stage=stage, request_uri="s3://b/requests/x.json"))
    failed = object_name(RUN_ID, "train:persona", 1)
    kube.finish_job(failed, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    names = KubernetesRunner(cfg, api=kube.api_client()).cleanup(RUN_ID)
    assert sorted(names) == sorted([job_name(), object_name(RUN_ID, "evaluate", 2)])
    # A finished Job holds no GPU: it stays for its logs until its TTL.
    assert sorted(j["metadata"]["name"] for j in kube.list(JOBS)) == sorted([failed, object_name("other-run", "train:record_qa", 1)])


# through the executor ---------------------------------------------------------------------------
def executor(kube: Cluster, store: Store, stages: dict[str, Any], **kube_cfg: Any) -> Executor:
    cfg = ControllerConfig(runners={"train": "kubernetes"}, poll_s=0.05, kubernetes=config(**kube_cfg),
                           retry={"max_attempts": 3, "backoff_s": 0.01})
    return Executor(store, RunBook(store), stages, config=cfg, runners={"kubernetes": KubernetesRunner(cfg.kubernetes, api=kube.api_client())})


def test_a_run_with_kubernetes_training_succeeds(kube, file_store, tmp_path):
    stages = make_stages(tmp_path / "calls.txt")
    kube.autorun = lambda resource, name: kube.run_job(name, stage_call(stages))
    ex = executor(kube, file_store, stages)
    run_id = ex.runbook.create(load_spec_text(SPEC), SPEC, None).run_id
    record = ex.execute(run_id)
    assert record.status == "succeeded", record.error
    assert record.stages["train:persona"].artifact["kind"] == "adapter"
    created = [c.body["metadata"]["name"] for c in kube.called("POST", "*/jobs", status=201)]
    assert created == [object_name(run_id, "train:record_qa", 1), object_name(run_id, "train:persona", 1)]
    assert kube.list(JOBS) == []  # deleted on success
    assert calls(tmp_path / "calls.txt").count("train:persona") == 1


def test_a_retried_stage_submits_a_new_job(kube, file_store, tmp_path):
    stages = make_stages(tmp_path / "calls.txt", fail={"train:record_qa": "retry-once"})
    kube.autorun = lambda resource, name: kube.run_job(name, stage_call(stages))
    ex = executor(kube, file_store, stages, backoff_limit=0)  # the Job does not retry: the executor does
    run_id = ex.runbook.create(load_spec_text(SPEC), SPEC, None).run_id
    record = ex.execute(run_id)
    assert record.status == "succeeded", record.error
    assert record.stages["train:record_qa"].attempts == 2
    created = [c.body["metadata"]["name"] for c in kube.called("POST", "*/jobs", status=201)]
    assert created[:2] == [object_name(run_id, "train:record_qa", 1), object_name(run_id, "train:record_qa", 2)]


def test_after_a_controller_crash_the_run_continues_with_the_job_it_had_submitted(kube, background, file_store, tmp_path):
    stages = make_stages(tmp_path / "calls.txt")
    first = executor(kube, file_store, stages)
    first.runners["kubernetes"] = DiesAfterSubmitting(first.config.kubernetes, api=kube.api_client())
    run_id = first.runbook.create(load_spec_text(SPEC), SPEC, None).run_id
    with pytest.raises(ControllerDied):
        first.execute(run_id)
    submitted = object_name(run_id, "train:record_qa", 1)
    assert RunBook(file_store).load(run_id).stages["train:record_qa"].handle["job"] == submitted

    kube.autorun = lambda resource, name: kube.run_job(name, stage_call(stages))  # for Jobs submitted from now on
    second = executor(kube, file_store, stages)  # a new process: it knows the run only from the store
    assert RunBook(file_store).load(run_id).status == "running"  # left unfinished by the crash
    done = background(second.execute, run_id)
    kube.run_job(submitted, stage_call(stages))  # the Job the first controller submitted, still running
    record = done.result(timeout=30)
    assert record.status == "succeeded", record.error
    created = [c.body["metadata"]["name"] for c in kube.called("POST", "*/jobs", status=201)]
    assert created == [submitted, object_name(run_id, "train:persona", 1)]  # no second Job for record_qa
    assert calls(tmp_path / "calls.txt").count("train:record_qa") == 1


def test_a_cancelled_run_leaves_no_job_behind(kube, file_store, tmp_path):
    stages = make_stages(tmp_path / "calls.txt")
    ex = executor(kube, file_store, stages)
    run_id = ex.runbook.create(load_spec_text(SPEC), SPEC, None).run_id
    batch = client.BatchV1Api(kube.api_client())
    leftover = object_name(run_id, "train:persona", 7)  # from an attempt before a controller crash
    other = object_name("another-run", "train:persona", 1)
    for rid, name in [(run_id, leftover), ("another-run", other)]:
        batch.create_namespaced_job("default", job_manifest(ex.config.kubernetes, name=name, run_id=rid, stage="train:persona",
                                                            request_uri="s3://b/requests/x.json"))
    thread = threading.Thread(target=ex.execute, args=(run_id,))
    thread.start()
    current = object_name(run_id, "train:record_qa", 1)
    kube.wait_for(lambda: kube.get(JOBS, current), what="the training Job")
    ex.cancel(run_id)
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert ex.runbook.load(run_id).status == "cancelled"
    assert kube.list(JOBS, labelSelector=selector(run_id)) == []
    assert kube.called("DELETE", f"*/jobs/{current}") and kube.called("DELETE", f"*/jobs/{leftover}")
    assert [j["metadata"]["name"] for j in kube.list(JOBS)] == [other]


# KubeRay ----------------------------------------------------------------------------------------
RAY_SPEC = spec_yaml(train={"scaling": {"workers": 2, "gpus_per_worker": 1}})


@pytest.fixture
def ray_up(file_store, tmp_path):
    return Upstream(file_store, tmp_path, RAY_SPEC)


def test_multi_worker_training_becomes_a_valid_rayjob(kube, background, ray_up):
    kube.install_crd()
    task = ray_up.task()
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, ray_up.store, Progress(task.stage))
    assert kube.run_rayjob(job_name(), ray_up.call) == 0
    assert fut.result(timeout=20).kind == "adapter"
    assert not kube.called("POST", "*/jobs")
    (post,) = kube.called("POST", "/apis/ray.io/v1/namespaces/default/rayjobs")
    ray = post.body
    assert ray["metadata"]["labels"][RUN_LABEL] == label_value(RUN_ID) and len(ray["metadata"]["name"]) <= 47
    spec = ray["spec"]
    assert spec["entrypoint"].split()[:3] == ["python3", "-m", "synthtune.trainer.job"]
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]
    (workers,) = cluster["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 2
    w = workers["template"]["spec"]
    assert w["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1" and w["nodeSelector"] and w["tolerations"]
    assert "nvidia.com/gpu" not in head["spec"]["containers"][0]["resources"]["limits"] and "nodeSelector" not in head["spec"]
    templates = {"head": head, "worker": workers["template"], "submitter": spec["submitterPodTemplate"]}
    for role, template in templates.items():
        validate(as_pod(template, f"{ray['metadata']['name']}-{role}"))
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] == "Never"
    assert kube.get(RAYJOBS, job_name()) is None and kube.called("DELETE", f"*/rayjobs/{job_name()}")


def test_a_failed_rayjob_reports_the_drivers_log(kube, background, ray_up):
    kube.install_crd()
    task = ray_up.task()
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, ray_up.store, Progress(task.stage))
    kube.run_rayjob(job_name(), failing(InvalidInput("train.lora.r: must be positive")))
    with pytest.raises(InvalidInput) as err:
        fut.result(timeout=20)
    assert "train.lora.r: must be positive" in str(err.value) and "mapping columns" in str(err.value)


def test_a_rayjob_that_kuberay_retries_is_followed_to_its_end(kube, background, ray_up):
    kube.install_crd()
    task = ray_up.task()
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, ray_up.store, Progress(task.stage))
    kube.wait_for(lambda: kube.get(RAYJOBS, job_name()), what="the RayJob")
    kube.set_status(RAYJOBS, job_name(), {"jobStatus": "FAILED", "jobDeploymentStatus": "Retrying", "failed": 1})
    time.sleep(0.3)
    assert not fut.done()  # backoffLimit: KubeRay runs it again on a new cluster
    assert kube.run_rayjob(job_name(), ray_up.call) == 0
    assert fut.result(timeout=20).kind == "adapter"


def test_a_rayjob_kuberay_refuses_fails_with_its_message(kube, background, ray_up):
    kube.install_crd()
    task = ray_up.task()
    fut = background(KubernetesRunner(config(), api=kube.api_client()).run, task, ray_up.store, Progress(task.stage))
    kube.wait_for(lambda: kube.get(RAYJOBS, job_name()), what="the RayJob")
    kube.set_status(RAYJOBS, job_name(), {"jobDeploymentStatus": "ValidationFailed", "reason": "ValidationFailed",
                                          "message": "RayJob name should be no more than 47 characters"})
    with pytest.raises(PermanentError, match="KubeRay refused it: .*RayJob name should be no more than 47 characters"):
        fut.result(timeout=20)


def test_an_unschedulable_ray_worker_fails_the_stage(kube, background, ray_up):
    kube.install_crd()
    task = ray_up.task()
    fut = background(KubernetesRunner(config(schedule_timeout_s=0.5), api=kube.api_client()).run, task, ray_up.store, Progress(task.stage))
    ray = kube.wait_for(lambda: kube.get(RAYJOBS, job_name()), what="the RayJob")
    kube.set_status(RAYJOBS, job_name(), {"jobDeploymentStatus": "Initializing", "rayClusterName": f"{job_name()}-x1y2z"})
    labels = {**ray["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["metadata"]["labels"],
              "ray.io/cluster": f"{job_name()}-x1y2z", "ray.io/node-type": "worker"}
    kube.add_pod(f"{job_name()}-x1y2z-gpu-workers-abcde", labels, container="ray-worker", unschedulable=NOT_SCHEDULABLE)
    with pytest.raises(PermanentError, match="Unschedulable"):
        fut.result(timeout=15)
    assert kube.get(RAYJOBS, job_name()) is None


@pytest.mark.parametrize("crd, enabled, gpus_per_worker, gpus", [
    (False, "auto", 2, 4),   # no KubeRay: one pod with every worker's GPUs, Ray inside it
    (False, "auto", 0, 2),   # 0: the configured GPUs of a train Job, for each worker
    (True, "never", 1, 2),
])
def test_multi_worker_training_without_kuberay_is_one_job(kube, background, file_store, tmp_path, crd, enabled, gpus_per_worker, gpus):
    if crd:
        kube.install_crd()
    up = Upstream(file_store, tmp_path, spec_yaml(train={"scaling": {"workers": 2, "gpus_per_worker": gpus_per_worker}}))
    task = up.task()
    fut = background(KubernetesRunner(config(ray={"enabled": enabled}), api=kube.api_client()).run, task, up.store, Progress(task.stage))
    kube.run_job(job_name(), up.call)
    assert fut.result(timeout=20).kind == "adapter"
    (post,) = kube.called("POST", "*/jobs")
    assert post.body["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == str(gpus)
    assert not kube.called("POST", "*/rayjobs")


def test_cleanup_deletes_rayjobs_too(kube, ray_up):
    kube.install_crd()
    cfg = config()
    custom = client.CustomObjectsApi(kube.api_client())
    body = rayjob_manifest(cfg, name=job_name(), run_id=RUN_ID, stage="train:record_qa", request_uri="s3://b/requests/x.json",
                           workers=2, gpus_per_worker=1)
    custom.create_namespaced_custom_object("ray.io", "v1", "default", "rayjobs", body)
    assert KubernetesRunner(cfg, api=kube.api_client()).cleanup(RUN_ID) == [job_name()]
    assert kube.list(RAYJOBS) == []


# every manifest the runner can produce ----------------------------------------------------------
def _manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for kind in RUNNER_KINDS:
        stage = kind if kind in ("prepare", "evaluate") else f"{kind}:record_qa"
        for gpu in (True, False):
            cfg = config(gpus={kind: 1} if gpu else {}, image_pull_secrets=["ghcr"])
            job = job_manifest(cfg, name=object_name(RUN_ID, stage, 1), run_id=RUN_ID, stage=stage, request_uri="s3://b/p/requests/r.json")
            out.append((f"Job-{kind}-{'gpu' if gpu else 'cpu'}", job))
    for gpw in (1, 0.5):
        ray = rayjob_manifest(config(), name=object_name(RUN_ID, "train:record_qa", 3), run_id=RUN_ID, stage="train:record_qa",
                              request_uri="s3://b/p/requests/r.json", workers=4, gpus_per_worker=gpw)
        cluster = ray["spec"]["rayClusterSpec"]
        out.append((f"RayJob-head-{gpw}", as_pod(cluster["headGroupSpec"]["template"], "head")))
        out.append((f"RayJob-worker-{gpw}", as_pod(cluster["workerGroupSpecs"][0]["template"], "worker")))
        out.append((f"RayJob-submitter-{gpw}", as_pod(ray["spec"].get("submitterPodTemplate") or {"spec": {}}, "submitter")))
    return out


MANIFESTS = _manifests()


@pytest.mark.parametrize("obj", [m for _, m in MANIFESTS], ids=[i for i, _ in MANIFESTS])
def test_every_manifest_is_strictly_valid(obj):
    validate(obj)
    pod = obj["spec"]["template"]["spec"] if obj["kind"] == "Job" else obj["spec"]
    for c in pod["containers"]:
        gpus = c["resources"].get("limits", {}).get("nvidia.com/gpu", "0")
        assert gpus.isdigit() and gpus == c["resources"]["requests"].get("nvidia.com/gpu", "0")  # a quantity: a string
        assert (gpus != "0") == ("nodeSelector" in pod) == ("tolerations" in pod)  # only GPU pods go to GPU nodes
        if "worker" in obj["metadata"]["name"]:
            assert gpus == "1"  # 0.5 GPU per worker still needs a whole GPU per pod
    if obj["kind"] == "Job":
        assert pod["imagePullSecrets"] == [{"name": "ghcr"}]


@pytest.mark.parametrize("method", ["record_qa", "a" * 80, "Persona_Based (v2)!"])
def test_object_names_are_valid_and_distinct(method):
    names = {object_name(RUN_ID, f"{kind}:{method}", attempt) for kind in ("generate", "train") for attempt in (1, 2, 100)}
    assert len(names) == 6
    for name in names:  # a RayJob name must be a DNS-1035 label of at most 47 characters (KubeRay)
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 47, name
    assert object_name(RUN_ID, f"train:{method}", 1) == object_name(RUN_ID, f"train:{method}", 1)


# consistency with what the project ships --------------------------------------------------------
def test_the_job_matches_the_plain_training_job_in_k8s():
    (plain,) = yaml.safe_load_all((REPO / "k8s" / "train-job.yaml").read_text())
    ours = job_manifest(KubernetesConfig(images=IMAGES), name="synthtune-train", run_id=RUN_ID, stage="train:x", request_uri="s3://b/requests/r.json")
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished", "podFailurePolicy"):
        assert ours["spec"][key] == plain["spec"][key], key
    p, o = plain["spec"]["template"]["spec"], ours["spec"]["template"]["spec"]
    for key in ("restartPolicy", "automountServiceAccountToken", "enableServiceLinks", "securityContext", "nodeSelector",
                "tolerations", "volumes"):
        assert o[key] == p[key], key
    for key in ("name", "imagePullPolicy", "securityContext", "volumeMounts"):
        assert o["containers"][0][key] == p["containers"][0][key], key
    for key in ("requests", "limits"):  # kubectl turns YAML's 1 into the quantity "1"
        assert o["containers"][0]["resources"][key] == {k: str(v) for k, v in p["containers"][0]["resources"][key].items()}


def test_config_defaults_match_the_helm_values():
    g = yaml.safe_load((REPO / "helm" / "synthtune" / "values.yaml").read_text())["gpuJobs"]
    d = KubernetesConfig()
    assert (d.gpus, d.gpu_resource, d.node_selector, d.tolerations) == (g["gpus"], g["gpuResource"], g["nodeSelector"], g["tolerations"])
    assert (d.cpu, d.memory, d.backoff_limit, d.active_deadline_s) == (g["cpu"], g["memory"], g["backoffLimit"], g["activeDeadlineSeconds"])
    assert (d.ttl_after_finished_s, d.schedule_timeout_s, d.delete_on_success) == (
        g["ttlSecondsAfterFinished"], g["scheduleTimeoutSeconds"], g["deleteOnSuccess"])
    r = g["rayJobs"]
    assert (d.ray.ray_version, d.ray.head_cpu, d.ray.head_memory) == (r["rayVersion"], r["headCpu"], r["headMemory"])


HELM_VARIANTS = sorted((REPO / "helm" / "synthtune" / "ci").glob("*.yaml"))


@pytest.mark.parametrize("variant", HELM_VARIANTS, ids=[p.stem for p in HELM_VARIANTS])
def test_every_manifest_from_the_charts_controller_config_is_valid(variant):
    helm = pytest.importorskip("helm_python")
    out = helm.Chart.load(str(REPO / "helm" / "synthtune")).render(yaml.safe_load(variant.read_text()), name="synthtune",
                                                                   namespace="ml", is_install=True)
    (text,) = [t for path, t in out.items() if path.endswith("templates/configmap.yaml")]
    cfg = ControllerConfig.model_validate(yaml.safe_load(yaml.safe_load(text)["data"]["controller.yaml"])).kubernetes
    for kind in RUNNER_KINDS:
        stage = f"{kind}:record_qa" if kind in ("generate", "train") else kind
        job = job_manifest(cfg, name=object_name(RUN_ID, stage, 1), run_id=RUN_ID, stage=stage, request_uri="s3://b/requests/r.json")
        validate(job)
        assert job["metadata"]["namespace"] == "ml" and job["spec"]["template"]["spec"]["serviceAccountName"].endswith("synthtune-job")
    ray = rayjob_manifest(cfg, name=object_name(RUN_ID, "train:x", 1), run_id=RUN_ID, stage="train:x", request_uri="s3://b/requests/r.json",
                          workers=2, gpus_per_worker=1)
    cluster = ray["spec"]["rayClusterSpec"]
    for role, template in [("head", cluster["headGroupSpec"]["template"]), ("worker", cluster["workerGroupSpecs"][0]["template"]),
                           ("submitter", ray["spec"]["submitterPodTemplate"])]:
        validate(as_pod(template, role))
