#!/usr/bin/env python3
"""`make e2e`: the chart's CPU install run as containers, minus Kubernetes itself.

Renders helm/synthtune with the real Helm engine (helm-python-sdk) and ci/e2e-values.yaml, turns the
rendered Deployments into pods for `podman kube play` (the shared stand-in script's `kube` verb),
puts the store on moto's S3 server on loopback, submits the quickstart pipeline (cut down to a few
records and steps) with `synthtune submit` and the bearer token, watches it to success, checks the
run record, the report and every artifact's manifest in S3, and runs each container's readiness
probe inside it. docs/deploy.md ("End-to-end test") lists what differs from a real cluster; every
change made to the rendered objects is in `for_podman` below.

    scripts/e2e.py [--keep] [--image-tag dev] [--timeout 1500]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "synthtune"
RELEASE, NAMESPACE = "synthtune", "ml"
BUCKET = "synthtune"
STANDIN = os.environ.get("STANDIN", str(REPO.parent / "shared" / "tools" / "standin-base.sh"))
# The quickstart pipeline, cut down so the five CPU containers finish on 2 cores. Both of its methods:
# `direct` (no teacher) always yields examples, so an adapter is trained and evaluated whatever the tiny
# teacher writes; record_qa asks the embedded teacher in the generator container twice per record
# (question, then answer), and with concurrency >= limit each step is one batched generate() call (a
# record counts as done only after both: progress reads 0/4 until then). Its 32-token answers may all be
# rejected (truncated, ungrounded); its train stage is then skipped, as the product does.
TINY = {
    "generate": {"methods": [{"name": "direct"}, {"name": "record_qa"}], "limit": 4,
                 "teacher": {"max_tokens": 32, "concurrency": 4}},
    "train": {"max_steps": 2, "eval_steps": 2, "checkpoint_steps": 2, "batch_size": 2, "max_seq_len": 192,
              "warmup_steps": 0},
    "evaluate": {"metrics": ["rouge", "bleu"], "limit": 2, "max_new_tokens": 16},
}


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(*cmd: str, check: bool = True, capture: bool = False, env: dict[str, str] | None = None,
       timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, env=env, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object `helm install` would create (the chart's test hook left out)."""
    import helm_python as helm

    out = helm.Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = [d for path, text in sorted(out.items()) if not path.endswith(".txt") for d in yaml.safe_load_all(text) if d]
    return [d for d in docs if "helm.sh/hook" not in d.get("metadata", {}).get("annotations", {})]


def _set_flag(args: list[str], flag: str, value: str) -> None:
    i = args.index(flag)
    args[i + 1] = value


def _resolve_env(env: list[dict[str, Any]], secret_data: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """secretKeyRef -> the Secret's value; fieldRef metadata.namespace -> the release namespace."""
    out = []
    for e in env:
        ref = e.get("valueFrom", {})
        if "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            e = {"name": e["name"], "value": secret_data[key["name"]][key["key"]]}
        elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            e = {"name": e["name"], "value": NAMESPACE}
        out.append(e)
    return out


def for_podman(objects: list[dict[str, Any]], ports: dict[str, tuple[int, int]], secret_data: dict[str, dict[str, str]],
               sources: Path, config_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rendered Deployments as `podman kube play` can start them on one host, and the controller config.

    podman has no Services, Secrets, ConfigMaps, PVCs or cluster DNS: every pod joins the host network on
    ports of its own (args and probes move together; containerPorts go, as podman maps none on the
    host network), Secret references become values,
    the config map and the sources claim become read-only host folders, and the controller reaches the
    stage services at 127.0.0.1:<port>. No Kubernetes API, so the leader Lease is off (one replica).
    """
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    (cm,) = [c for c in by_kind["ConfigMap"] if c["metadata"]["name"].endswith("-config")]
    config = yaml.safe_load(cm["data"]["controller.yaml"])
    for kind, target in config.get("services", {}).items():
        host = target.removeprefix("dns:///").split(":")[0]  # e.g. dns:///synthtune-dataprep-pods:50051
        component = host.removeprefix(f"{RELEASE}-").removesuffix("-pods")
        config["services"][kind] = f"127.0.0.1:{ports[component][0]}"
    config["leader"]["lease"] = False
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, text in cm["data"].items():
        (config_dir / name).write_text(text if name != "controller.yaml" else yaml.safe_dump(config, sort_keys=False))
    pods = []
    for dep in by_kind["Deployment"]:
        dep = copy.deepcopy(dep)
        component = dep["metadata"]["labels"]["app.kubernetes.io/component"]
        grpc_port, metrics_port = ports[component]
        dep["spec"]["replicas"] = 1
        spec = dep["spec"]["template"]["spec"]
        spec["hostNetwork"] = True
        for key in ("serviceAccountName", "automountServiceAccountToken", "enableServiceLinks"):
            spec.pop(key, None)
        for c in spec["containers"]:
            _set_flag(c["args"], "--port", str(grpc_port))
            _set_flag(c["args"], "--metrics-port", str(metrics_port))
            c.pop("ports", None)  # podman refuses port mappings on the host network; the args above set the ports
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if "grpc" in c.get(probe, {}):
                    c[probe]["grpc"]["port"] = grpc_port
            c["env"] = _resolve_env(c.get("env", []), secret_data)
            for src in c.pop("envFrom", []):
                c["env"] += [{"name": k, "value": v} for k, v in secret_data[src["secretRef"]["name"]].items()]
        for v in spec.get("volumes", []):
            renamed = f"{component}-{v['name']}"  # podman names emptyDirs as volumes: one per pod, as in Kubernetes
            for c in spec["containers"]:
                for m in c.get("volumeMounts", []):
                    m["name"] = renamed if m["name"] == v["name"] else m["name"]
            v["name"] = renamed
            if "configMap" in v:
                v.pop("configMap")
                v["hostPath"] = {"path": str(config_dir), "type": "Directory"}
            elif "persistentVolumeClaim" in v:
                v.pop("persistentVolumeClaim")
                v["hostPath"] = {"path": str(sources), "type": "Directory"}
        pods.append(dep)
    return pods, config


def podman(*args: str, check: bool = True, capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return sh(STANDIN, "podman", *args, check=check, capture=capture, timeout=timeout)


def container_names(pods: list[dict[str, Any]]) -> dict[str, str]:
    """component -> podman's name for its container (`<deployment>-pod-0-<container>`)."""
    out = {}
    for dep in pods:
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        out[dep["metadata"]["labels"]["app.kubernetes.io/component"]] = f"{dep['metadata']['name']}-pod-0-{c['name']}"
    return out


HEALTH = ("import sys,grpc;from grpc_health.v1 import health_pb2 as h,health_pb2_grpc as g;"
          "c=grpc.insecure_channel('127.0.0.1:%d');"
          "r=g.HealthStub(c).Check(h.HealthCheckRequest(service='%s'),timeout=%d);"
          "print(h.HealthCheckResponse.ServingStatus.Name(r.status));sys.exit(r.status!=h.HealthCheckResponse.SERVING)")


def wait_ready(pods: list[dict[str, Any]], names: dict[str, str], deadline: float) -> None:
    """Each readiness probe (grpc.health.v1 on its port and service) answered SERVING, asked from inside the container."""
    pending = {}
    for dep in pods:
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        probe = c["readinessProbe"]["grpc"]
        pending[dep["metadata"]["labels"]["app.kubernetes.io/component"]] = (probe["port"], probe.get("service", ""),
                                                                                c["readinessProbe"].get("timeoutSeconds", 1))
    while pending:
        for component, (port, service, timeout) in list(pending.items()):
            state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", names[component], capture=True, check=False).stdout.strip()
            if not state.startswith("running"):
                raise SystemExit(f"e2e: container {names[component]} is {state or 'missing'}; its log:\n" + logs(names[component]))
            probe = podman("exec", names[component], "python", "-c", HEALTH % (port, service, timeout), capture=True, check=False)
            if probe.returncode == 0:
                log(f"{component}: readiness probe (grpc {port} {service}) -> {probe.stdout.strip()}")
                del pending[component]
        if pending and time.monotonic() > deadline:
            raise SystemExit(f"e2e: not ready in time: {sorted(pending)}\n" + "\n".join(logs(names[c]) for c in pending))
        if pending:
            time.sleep(3)


def check_entrypoints(prefix: str, tag: str) -> None:
    """Each image's own entry point and default command (`--help`, or the controller's `serve --help`) runs
    with a read-only root and no network, as the chart and the GPU Jobs start them."""
    for name, extra in (("generator", ["serve", "--help"]), ("trainer", []), ("evaluator", [])):
        image = f"{prefix}/synthtune-{name}:{tag}"
        out = sh(STANDIN, "run", "--rm", "--pull", "never", "--read-only", "--network", "none", "--tmpfs", "/tmp", "-v", "/cache",
                 image, *extra, capture=True, check=False, timeout=300)
        if out.returncode != 0 or "usage" not in out.stdout.lower():
            raise SystemExit(f"e2e: {image} {' '.join(extra) or '(default command)'} exited {out.returncode}:\n{out.stdout}{out.stderr}")
        log(f"{image}: entry point answers --help with no network ({len(out.stdout.splitlines())} lines)")


def logs(name: str) -> str:
    out = podman("logs", "--tail", "60", name, capture=True, check=False)
    return f"--- {name} ---\n{out.stdout}{out.stderr}"


def start_moto() -> tuple[Any, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def s3_client(endpoint: str, creds: dict[str, str]) -> Any:
    from minio import Minio

    return Minio(endpoint.split("://", 1)[1], access_key=creds["AWS_ACCESS_KEY_ID"], secret_key=creds["AWS_SECRET_ACCESS_KEY"],
                 secure=False, region="us-east-1")


def write_sources(dest: Path) -> Path:
    """The quickstart's files and its pipeline, cut down (TINY), in the folder mounted as the sources claim."""
    dest.mkdir(parents=True)
    for f in (REPO / "examples" / "quickstart").iterdir():
        if f.is_file() and f.name != "pipeline.yaml":
            shutil.copy(f, dest / f.name)
    pipeline = deep_merge(yaml.safe_load((REPO / "examples" / "quickstart" / "pipeline.yaml").read_text()), TINY)
    (dest / "pipeline.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    dest.chmod(0o755)
    return dest / "pipeline.yaml"


def cli(*args: str, env: dict[str, str], capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return sh(sys.executable, "-m", "synthtune.cli.main", *args, env=env, capture=capture, timeout=timeout)


def check_store(client: Any, prefix: str, run_id: str, report: bool = True) -> None:
    """run.json says succeeded, the report is there, and every artifact's files match its manifest."""
    run = json.loads(client.get_object(BUCKET, f"{prefix}/runs/{run_id}/run.json").read())
    assert run["status"] == "succeeded", f"run.json status {run['status']!r}"
    log(f"run.json: {json.dumps({k: v for k, v in run.items() if k != 'spec_yaml'})[:2000]}")
    if report:
        assert run.get("report"), f"run.json has no report: {sorted(run)}"
        html = client.get_object(BUCKET, f"{prefix}/{run['report']}").read()
        assert len(html) > 200, f"report {run['report']}: {len(html)} bytes"
        log(f"report {run['report']}: {len(html)} bytes")
    manifests = [o.object_name for o in client.list_objects(BUCKET, f"{prefix}/artifacts/", recursive=True)
                 if o.object_name.endswith("/manifest.json")]
    assert manifests, f"no artifacts under s3://{BUCKET}/{prefix}/artifacts/"
    kinds = []
    for key in manifests:
        manifest = json.loads(client.get_object(BUCKET, key).read())
        base = key.rsplit("/", 1)[0]
        for name, entry in manifest["files"].items():
            data = client.get_object(BUCKET, f"{base}/{name}").read()
            assert len(data) == entry["bytes"], f"{base}/{name}: {len(data)} bytes, manifest says {entry['bytes']}"
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"{base}/{name}: sha256 differs from the manifest"
        kinds.append(manifest["kind"])
        log(f"artifact {manifest['kind']:<10} {manifest['id']}: {len(manifest['files'])} files match the manifest")
    log(f"{len(manifests)} artifacts, kinds {sorted(set(kinds))}")
    missing = {"prepared", "synthetic", "adapter", "evaluation"} - set(kinds) if report else set()
    assert not missing, f"the run made no {sorted(missing)} artifact (kinds: {sorted(set(kinds))})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image-tag", default=os.environ.get("IMAGE_TAG", "dev"))
    ap.add_argument("--image-prefix", default=os.environ.get("IMAGE_PREFIX", "localhost"))
    ap.add_argument("--timeout", type=float, default=1500, help="seconds for the whole run (default 1500)")
    ap.add_argument("--values", type=Path, action="append", default=[], help="more chart values on top of ci/e2e-values.yaml")
    ap.add_argument("--until", help="stop the run after this stage (synthtune submit --until)")
    ap.add_argument("--keep", action="store_true", help="leave the pods, moto and the work folder for a look")
    opts = ap.parse_args(argv)
    deadline = time.monotonic() + opts.timeout
    work = Path(tempfile.mkdtemp(prefix="synthtune-e2e-"))
    work.chmod(0o755)
    creds = {"AWS_ACCESS_KEY_ID": "e2e-" + secrets.token_hex(4), "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16)}
    token = secrets.token_hex(16)
    secret_data = {"synthtune-s3": creds, "synthtune-auth": {"SYNTHTUNE_AUTH_TOKEN": token}}
    server, endpoint = start_moto()
    client = s3_client(endpoint, creds)
    client.make_bucket(BUCKET)
    log(f"store: moto S3 at {endpoint}, bucket {BUCKET}; work folder {work}")
    values = deep_merge(yaml.safe_load((CHART / "ci" / "e2e-values.yaml").read_text()),
                        {"image": {"repository": opts.image_prefix, "tag": opts.image_tag}, "store": {"s3": {"endpoint": endpoint}}})
    for extra in opts.values:
        values = deep_merge(values, yaml.safe_load(extra.read_text()))
    objects = render(values)
    log("rendered: " + ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects))
    pipeline = write_sources(work / "sources")
    components = [o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects if o["kind"] == "Deployment"]
    ports = {c: (free_port(), free_port()) for c in components}
    pods, config = for_podman(objects, ports, secret_data, work / "sources", work / "config")
    kube = work / "kube.yaml"
    kube.write_text(yaml.safe_dump_all(pods, sort_keys=False))
    names = container_names(pods)
    store_uri = values["store"]["uri"]
    prefix = store_uri.split("/", 3)[3]
    env = dict(os.environ, SYNTHTUNE_AUTH_TOKEN=token, PYTHONPATH=str(REPO / "services"))
    ok = False
    try:
        check_entrypoints(opts.image_prefix, opts.image_tag)
        sh(STANDIN, "kube", str(kube))
        wait_ready(pods, names, deadline)
        controller = f"127.0.0.1:{ports['controller'][0]}"
        base_dir = config.get("service_base_dir")
        log(f"controller at {controller}; sources mounted at {base_dir}")
        until = ["--until", opts.until] if opts.until else []
        submitted = cli("submit", str(pipeline), "--controller", controller, *until, env=env, capture=True, timeout=120)
        sys.stderr.write(submitted.stderr)
        run_id = submitted.stdout.split("run_id=", 1)[1].split()[0]
        log(f"run {run_id} submitted")
        cli("runs", "watch", run_id, "--controller", controller, env=env, timeout=max(60.0, deadline - time.monotonic()))
        cli("runs", "show", run_id, "--controller", controller, env=env)
        check_store(client, prefix, run_id, report=not opts.until)
        wait_ready(pods, names, deadline + 60)  # still ready after the run
        ok = True
        log(f"e2e passed in {opts.timeout - (deadline - time.monotonic()):.0f} s")
    finally:
        if not ok:
            for name in names.values():
                print(logs(name), file=sys.stderr)
        if not opts.keep:
            sh(STANDIN, "kube", "--down", str(kube), check=False)
            server.stop()
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("e2e: terminated"))  # still take the pods down
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        sys.exit(f"e2e failed: {' '.join(map(str, exc.cmd))} exited {exc.returncode}")
    except AssertionError as exc:
        sys.exit(f"e2e failed: {exc}")
