"""What a cluster adds to its API server, played by the test: the kubelet, the Job controller, KubeRay.

``run_job()`` runs a Job's command with the real Job entry point (synthtune.jobentry) in this
process, adds each pod with its exit code and log, and sets the Job's status as the Job
controller would, podFailurePolicy and backoffLimit included. ``run_rayjob()`` does the same
for a RayJob (head, workers and the submitter pod that carries the driver's log).
``add_pod()``, ``job_pod()`` and ``add_event()`` set up any other state: an Unschedulable pod,
an image that cannot be pulled, a pod that admission refused.
"""

from __future__ import annotations

import contextlib
import copy
import io
import random
import shlex
import string
import threading
import uuid
from collections.abc import Callable
from typing import Any

from .kubeapi import EVENTS, JOBS, PODS, RAYJOBS, KubeAPI, now


def suffix(k: int = 5) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=k))


class Cluster(KubeAPI):
    def __init__(self, namespace: str = "default") -> None:
        super().__init__(namespace)
        self._run_lock = threading.Lock()

    def add_pod(self, name: str, labels: dict[str, str], *, container: str = "main", image: str = "img:1",
                phase: str = "Pending", exit_code: int | None = None, waiting: tuple[str, str] | None = None,
                unschedulable: str | None = None, log: str | None = None, owner: dict[str, Any] | None = None,
                spec: dict[str, Any] | None = None, ns: str | None = None) -> dict[str, Any]:
        """A pod in a given state: Unschedulable, waiting (reason, message), or terminated with ``exit_code``."""
        ns = ns or self.namespace
        status: dict[str, Any] = {"phase": phase, "conditions": []}
        state: dict[str, Any] = {"running": {"startedAt": now()}} if phase == "Running" else {"waiting": {"reason": "ContainerCreating"}}
        if unschedulable:
            status["conditions"].append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable})
        if waiting:
            state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        if exit_code is not None:
            status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            state = {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}}
        if not unschedulable:
            status["containerStatuses"] = [{"name": container, "image": image, "imageID": "", "ready": False,
                                            "restartCount": 0, "state": state}]
        pod = {"apiVersion": "v1", "kind": "Pod", "status": status,
               "metadata": {"name": name, "namespace": ns, "labels": dict(labels), "uid": str(uuid.uuid4()),
                            "creationTimestamp": now(), "ownerReferences": [owner] if owner else []},
               "spec": copy.deepcopy(spec) or {"containers": [{"name": container, "image": image}]}}
        if not unschedulable:
            pod["spec"]["nodeName"] = "gpu-node-1"
        if log is not None:
            self.logs[ns, name] = log
        return self._store(PODS, pod, "ADDED")

    def add_event(self, name: str, reason: str, message: str, kind: str = "Job", ns: str | None = None) -> dict[str, Any]:
        """A Warning Event about an object, as a controller records it (e.g. FailedCreate)."""
        ns = ns or self.namespace
        event = {"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": reason, "message": message,
                 "involvedObject": {"kind": kind, "name": name, "namespace": ns}, "lastTimestamp": now(), "count": 1,
                 "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": ns, "uid": str(uuid.uuid4()),
                              "creationTimestamp": now()}}
        return self._store(EVENTS, event, "ADDED")

    def job_pod(self, job_name: str, ns: str | None = None, **state: Any) -> dict[str, Any]:
        """A pod the Job controller would create for ``job_name``: its template, labels and owner."""
        job = self._find(JOBS, ns or self.namespace, job_name)
        tpl = job["spec"]["template"]
        name = f"{job_name}-{suffix()}"
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}
        c = tpl["spec"]["containers"][0]
        return self.add_pod(name, tpl["metadata"]["labels"], container=c["name"], image=c["image"], owner=owner,
                            spec=tpl["spec"], ns=ns, **state)

    def finish_job(self, name: str, condition: str, reason: str = "", message: str = "", ns: str | None = None) -> None:
        """End a Job as its controller does: Complete (with SuccessCriteriaMet) or Failed (with FailureTarget)."""
        extra = "SuccessCriteriaMet" if condition == "Complete" else "FailureTarget"
        conds = [{"type": t, "status": "True", "reason": reason, "message": message, "lastTransitionTime": now()}
                 for t in (extra, condition)]
        counts = {"succeeded": 1} if condition == "Complete" else {}
        self.set_status(JOBS, name, {"conditions": conds, "completionTime": now(), "active": 0, **counts}, ns)

    def execute(self, command: list[str], call: Callable[..., Any]) -> tuple[int, str]:
        """Run ``python3 -m synthtune.<stage>.job --request URI`` with the real entry point and ``call`` as the stage."""
        from synthtune.jobentry import main

        module = command[command.index("-m") + 1]
        out = io.StringIO()
        with self._run_lock, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(module.split(".")[1], call, command[command.index("-m") + 2:])
        return code, out.getvalue()

    def run_job(self, name: str, call: Callable[..., Any], ns: str | None = None) -> int:
        """The kubelet and the Job controller: run pods until success, a FailJob rule or the backoffLimit."""
        job = self.wait_for(lambda: self.get(JOBS, name, ns), what=f"Job {name}")
        spec, container = job["spec"], job["spec"]["template"]["spec"]["containers"][0]
        self.set_status(JOBS, name, {"startTime": now(), "active": 1}, ns)
        failed = 0
        while True:
            code, log = self.execute(container["command"], call)
            pod = self.job_pod(name, ns, exit_code=code, log=log)
            if code == 0:
                self.finish_job(name, "Complete", ns=ns)
                return code
            failed += 1
            self.set_status(JOBS, name, {"failed": failed}, ns)
            for i, rule in enumerate((spec.get("podFailurePolicy") or {}).get("rules", [])):
                codes = rule.get("onExitCodes") or {}
                if (rule["action"] == "FailJob" and codes.get("containerName") in (None, container["name"])
                        and (code in codes.get("values", [])) == (codes.get("operator") == "In")):
                    self.finish_job(name, "Failed", "PodFailurePolicy",
                                    f"Container {container['name']} for pod {pod['metadata']['namespace']}/{pod['metadata']['name']} "
                                    f"failed with exit code {code} matching FailJob rule at index {i}", ns)
                    return code
            if failed > spec.get("backoffLimit", 6):
                self.finish_job(name, "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit", ns)
                return code

    def run_rayjob(self, name: str, call: Callable[..., Any], ns: str | None = None) -> int:
        """KubeRay: head, workers and the submitter pod (which carries the driver's log), then the jobStatus."""
        ray = self.wait_for(lambda: self.get(RAYJOBS, name, ns), what=f"RayJob {name}")
        cluster = f"{name}-{suffix()}"
        spec = ray["spec"]["rayClusterSpec"]
        self.set_status(RAYJOBS, name, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "rayClusterName": cluster}, ns)
        groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"] for _ in range(g["replicas"])]
        for i, (group, g) in enumerate(groups):
            labels = {**g["template"]["metadata"].get("labels", {}), "ray.io/cluster": cluster, "ray.io/group": group}
            self.add_pod(f"{cluster}-{group}-{i}", labels, container=g["template"]["spec"]["containers"][0]["name"],
                         phase="Running", spec=g["template"]["spec"], ns=ns)
        code, log = self.execute(shlex.split(ray["spec"]["entrypoint"]), call)
        submitter = ray["spec"].get("submitterPodTemplate") or {"metadata": {}, "spec": {"containers": [{"name": "ray-job-submitter", "image": "x:1"}]}}
        self.add_pod(f"{name}-{suffix()}",
                     {**submitter["metadata"].get("labels", {}), "job-name": name}, container="ray-job-submitter",
                     exit_code=code, log=log, spec=submitter["spec"], ns=ns)
        done = {"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"} if code == 0 else \
            {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed", "reason": "AppFailed", "message": f"job exited with {code}"}
        self.set_status(RAYJOBS, name, done, ns)
        return code
