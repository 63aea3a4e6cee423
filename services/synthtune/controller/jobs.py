"""`synthtune job`: a stage's request written into the store and its Kubernetes Job(s) printed for
`kubectl apply -f -`, and the results of such Jobs folded back into the run record.

The run record gets the stage as a running attempt whose handle names the Job, exactly as the
Kubernetes runner leaves one it submitted: a controller that reads the store follows the Job and
finishes the stage; without one, `synthtune report` (and `adopt_job_results`) read the outcome the
Job wrote beside its request.
"""

from __future__ import annotations

from typing import Any

from synthtune import __version__
from synthtune.controller.config import KubernetesConfig
from synthtune.controller.manifests import MODULES, job_manifest, object_name
from synthtune.controller.runs import RunBook, now
from synthtune.errors import InvalidInput
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import ArtifactRef, Store
from synthtune.store.requests import result_key, write_request

IMAGES = {"prepare": "generator", "generate": "generator", "train": "trainer", "evaluate": "evaluator"}
NEEDS = {"generate": "prepare", "train": "generate", "evaluate": "train"}


def default_image(kind: str) -> str:
    return f"ghcr.io/synthtune/synthtune-{IMAGES[kind]}:{__version__}"


def _inputs(record: dict[str, Any], stage: str) -> dict[str, ArtifactRef | None]:
    """The artifacts ``stage`` reads, from the run's finished stages; a clear error naming what is missing."""
    kind, _, method = stage.partition(":")
    stages = record["stages"]

    def artifact(name: str) -> ArtifactRef:
        info = stages.get(name) or {}
        if info.get("state") != "succeeded" or not info.get("artifact"):
            raise InvalidInput(f"{stage} needs the output of {name}, which run {record['run_id']} does not have yet "
                               f"({name}: {info.get('state', 'not in this run')}): finish it first "
                               f"(`synthtune job {name.split(':')[0]} ... --run {record['run_id']}`)")
        a = info["artifact"]
        return ArtifactRef(a["kind"], a["id"], a["uri"])

    if kind == "prepare":
        return {}
    if kind == "generate":
        return {"prepared": artifact("prepare")}
    if kind == "train":
        return {"prepared": artifact("prepare"), "synthetic": artifact(f"generate:{method}")}
    adapters = {f"adapter:{n.split(':', 1)[1]}": artifact(n) for n, i in stages.items()
                if n.startswith("train:") and i.get("state") != "skipped"}
    return {"prepared": artifact("prepare"), **adapters}


def submit_stage_jobs(spec: PipelineSpec, spec_yaml: str, store: Store, kind: str, cfg: KubernetesConfig,
                      run_id: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the run record, one Job manifest per stage of ``kind``): requests written, the run record updated."""
    if kind not in MODULES:
        raise InvalidInput(f"unknown stage {kind!r}: choose prepare, generate, train or evaluate")
    book = RunBook(store)
    if run_id:
        record = book.load(run_id)
    elif kind != "prepare":
        raise InvalidInput(f"{kind} needs the output of {NEEDS[kind]}: start with `synthtune job prepare ...` (or any stage "
                           "command with --store) and pass the run id it prints as --run")
    else:
        record = book.create(spec, spec_yaml, "prepare")
    names = [n for n in record["stages"] if n.partition(":")[0] == kind]
    if not names:  # a run created with an earlier `until`: the stage joins it
        from synthtune.controller.runs import stage_names

        names = [n for n in stage_names(spec, kind) if n.partition(":")[0] == kind]
        for n in names:
            record["stages"][n] = {"state": "pending", "artifact": None, "attempts": 0, "message": ""}
        record["until"] = kind
    manifests = []
    for stage in names:
        info = record["stages"][stage]
        attempt = int(info.get("attempts") or 0) + 1
        name = object_name(record["run_id"], stage, attempt)
        request = {"spec_yaml": record["spec_yaml"], "base_dir": record.get("base_dir"), "method": stage.partition(":")[2] or None,
                   "run_id": record["run_id"], "stage": stage, "attempt": attempt,
                   "inputs": {k: v.to_dict() if v else None for k, v in _inputs(record, stage).items()}}
        uri = write_request(store, MODULES[kind], request, name=name)
        manifests.append(job_manifest(cfg, name=name, run_id=record["run_id"], stage=stage, request_uri=uri))
        info.update(state="running", attempts=attempt, message=f"Job {cfg.namespace}/{name} printed for kubectl apply",
                    handle={"job": name, "object": "Job"}, execution="kubernetes")
    record.update(status="running", owner=None, heartbeat=0, error=None)
    book.event(record, "jobs_printed", message=f"{len(manifests)} Job(s) for {kind}: {', '.join(m['metadata']['name'] for m in manifests)}")
    return record, manifests


def adopt_job_results(store: Store, record: dict[str, Any]) -> dict[str, Any]:
    """Fold the outcomes that Jobs wrote beside their requests into the run record (saved when anything changed)."""
    changed = False
    for info in record["stages"].values():
        job = (info.get("handle") or {}).get("job")
        if info.get("state") != "running" or not job or not store.exists(result_key(f"requests/{job}.json")):
            continue
        outcome = store.get_json(result_key(f"requests/{job}.json"))
        if outcome.get("result"):
            info.update(state="succeeded", artifact=outcome["result"], message="", handle=None, finished_at=now())
        elif outcome.get("error_kind") == "skipped":
            info.update(state="skipped", message=str(outcome.get("skipped") or ""), handle=None)
        else:
            info.update(state="failed", message=str(outcome.get("error") or "the Job failed"), handle=None)
        changed = True
    if changed:  # the report stage is the controller's (or `synthtune report`'s) own work, not a Job
        states = {i["state"] for n, i in record["stages"].items() if n != "report"}
        if "failed" in states:
            record.update(status="failed", error="; ".join(f"{n}: {i['message']}" for n, i in record["stages"].items()
                                                           if i["state"] == "failed"))
        elif states <= {"succeeded", "skipped"}:
            record["status"] = "succeeded"
        RunBook(store).save(record)
    return record


JOB_ENV = {"SYNTHTUNE_CACHE": "/cache", "SYNTHTUNE_MODEL_CACHE": "/cache/models", "HF_HOME": "/cache/huggingface",
           "XDG_CACHE_HOME": "/cache", "MPLCONFIGDIR": "/tmp/matplotlib", "HF_HUB_OFFLINE": "1"}


def job_config(base: KubernetesConfig, kind: str, store_uri: str, image: str | None, gpus: int | None, namespace: str | None,
               node_selector: list[str], secrets: list[str]) -> KubernetesConfig:
    """The Job settings: a controller config's ``kubernetes`` section (or the defaults), then the flags on top."""
    import os

    selector = dict(base.node_selector)
    for item in node_selector:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--node-selector {item!r}: expected KEY=VALUE, e.g. nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3")
        selector[key] = value
    env = {**JOB_ENV, **base.env}
    if store_uri.startswith("s3://") and os.environ.get("SYNTHTUNE_S3_ENDPOINT") and "SYNTHTUNE_S3_ENDPOINT" not in env:
        env["SYNTHTUNE_S3_ENDPOINT"] = os.environ["SYNTHTUNE_S3_ENDPOINT"]
    images = {**base.images}
    images[kind] = image or images.get(kind) or default_image(kind)
    return base.model_copy(update={
        "images": images, "node_selector": selector, "env": env,
        "gpus": {**base.gpus, **({kind: gpus} if gpus is not None else {})},
        "namespace": namespace or base.namespace,
        "env_from_secrets": [*base.env_from_secrets, *[s for s in secrets if s not in base.env_from_secrets]],
    })
