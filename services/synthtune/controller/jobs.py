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
from synthtune.controller.manifests import job_manifest, object_name
from synthtune.controller.runs import RunBook, RunRecord, StageRecord
from synthtune.errors import InvalidInput
from synthtune.spec.graph import BY_KIND, RUNNER_KINDS, inputs_for, kind_of, method_of, stage_names
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import ArtifactRef, Store
from synthtune.store.requests import result_key, write_request

IMAGES = {"prepare": "generator", "generate": "generator", "train": "trainer", "evaluate": "evaluator"}


def default_image(kind: str) -> str:
    return f"ghcr.io/synthtune/synthtune-{IMAGES[kind]}:{__version__}"


def _inputs(record: RunRecord, name: str) -> dict[str, ArtifactRef | None]:
    """The artifacts stage ``name`` reads, from the run's finished stages; a clear error naming what is missing."""
    names = list(record.stages)
    artifacts = record.artifacts()
    for source in [d for inp in BY_KIND[kind_of(name)].inputs for d in names if kind_of(d) == inp.source
                   and (not inp.same_method or method_of(d) == method_of(name))]:
        info = record.stages[source]
        if info.state in ("succeeded", "cached") and artifacts.get(source) is not None:
            continue
        if info.state == "skipped" and kind_of(name) == "evaluate":
            continue  # a method that made nothing is left out of the evaluation
        raise InvalidInput(f"{name} needs the output of {source}, which run {record.run_id} does not have yet "
                           f"({source}: {info.state}): finish it first (`synthtune job {kind_of(source)} ... --run {record.run_id}`)")
    return inputs_for(name, names, artifacts)


def submit_stage_jobs(spec: PipelineSpec, spec_yaml: str, store: Store, kind: str, cfg: KubernetesConfig,
                      run_id: str | None = None) -> tuple[RunRecord, list[dict[str, Any]]]:
    """(the run record, one Job manifest per stage of ``kind``): requests written, the run record updated."""
    if kind not in RUNNER_KINDS:
        raise InvalidInput(f"unknown stage {kind!r}: choose {', '.join(RUNNER_KINDS)}")
    book = RunBook(store)
    if run_id:
        record = book.load(run_id)
    elif kind != "prepare":
        raise InvalidInput(f"{kind} reads what earlier stages made: start with `synthtune job prepare ...` (or any stage "
                           "command with --store) and pass the run id it prints as --run")
    else:
        record = book.create(spec, spec_yaml, "prepare")
    for name in stage_names(spec.method_keys(), kind):  # a run made with an earlier `until`: this stage joins it
        record.stages.setdefault(name, StageRecord())
    record.until = kind
    manifests = []
    for name in [n for n in record.stages if kind_of(n) == kind]:
        info = record.stages[name]
        inputs = _inputs(record, name)
        info.submissions += 1
        job = object_name(record.run_id, name, info.submissions)
        request = {"spec_yaml": record.spec_yaml, "base_dir": record.base_dir, "method": method_of(name) or None,
                   "run_id": record.run_id, "stage": name, "attempt": info.submissions,
                   "inputs": {k: v.to_dict() if v else None for k, v in inputs.items()}}
        uri = write_request(store, BY_KIND[kind].service, request, name=job)
        manifests.append(job_manifest(cfg, name=job, run_id=record.run_id, stage=name, request_uri=uri))
        info.state, info.attempts, info.handle = "running", info.attempts + 1, {"job": job, "object": "Job"}
        info.message = f"Job {cfg.namespace}/{job} printed for kubectl apply"
    record.status, record.owner, record.heartbeat, record.error = "running", None, 0.0, None
    book.event(record, "jobs_printed", message=f"{len(manifests)} Job(s) for {kind}: {', '.join(m['metadata']['name'] for m in manifests)}")
    return record, manifests


def adopt_job_results(store: Store, record: RunRecord) -> RunRecord:
    """Fold the outcomes that Jobs wrote beside their requests into the run record (saved when anything changed)."""
    changed = False
    for info in record.stages.values():
        job = (info.handle or {}).get("job")
        if info.state != "running" or not job or not store.exists(result_key(f"requests/{job}.json")):
            continue
        outcome = store.get_json(result_key(f"requests/{job}.json"))
        if outcome.get("result"):
            info.state, info.artifact, info.message = "succeeded", dict(outcome["result"]), ""
        elif outcome.get("error_kind") == "skipped":
            info.state, info.message = "skipped", str(outcome.get("skipped") or "")
        else:
            info.state, info.message = "failed", str(outcome.get("error") or "the Job failed")
            info.error_kind = outcome.get("error_kind")
        info.handle = None
        changed = True
    if changed:  # the report stage is the controller's (or `synthtune report`'s) own work, not a Job
        states = {i.state for n, i in record.stages.items() if BY_KIND[kind_of(n)].in_controller is False}
        if "failed" in states:
            record.status = "failed"
            record.error = "; ".join(f"{n}: {i.message}" for n, i in record.stages.items() if i.state == "failed")
        elif states <= {"succeeded", "skipped", "cached"} and all(kind_of(n) != "report" for n in record.stages):
            record.status = "succeeded"
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
