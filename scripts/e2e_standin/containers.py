"""The chart's rendered objects as containers on one host: render, convert for `podman kube play`, probe.

Used by the `helm`/`kubectl` stand-ins (cluster.py) and by scripts/e2e.py. podman runs through the
shared stand-in script (`STANDIN`, default ../shared/tools/standin-base.sh), which sets what this
sandbox needs. Every change made to the rendered objects is in `for_podman`; docs/deploy.md
("End-to-end test") lists them.
"""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
STANDIN = os.environ.get("STANDIN", str(REPO.parent / "shared" / "tools" / "standin-base.sh"))
HOOK = "helm.sh/hook"


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*cmd: str, check: bool = True, capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(a if len(a) < 160 else a[:60].split("\n")[0] + "..." for a in cmd))  # not a whole inline script
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, timeout=timeout)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: the sockets stay open until all are bound (one at a time, the kernel may hand
    the same port out twice, and two servers on one host-network port would share it)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, maps merged key by key, as Helm merges values files and --set."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def render(chart: Path, values: dict[str, Any], release: str, namespace: str) -> tuple[list[dict[str, Any]], str]:
    """Every object `helm install` would create (test hooks included), and the release notes."""
    import helm_python as helm

    out = helm.Chart.load(str(chart)).render(values, name=release, namespace=namespace, is_install=True)
    docs = [d for path, text in sorted(out.items()) if not path.endswith(".txt") for d in yaml.safe_load_all(text) if d]
    notes = "".join(text for path, text in out.items() if path.endswith("NOTES.txt"))
    return docs, notes


def _set_flag(args: list[str], flag: str, value: str) -> None:
    i = args.index(flag)
    args[i + 1] = value


def _resolve_env(env: list[dict[str, Any]], secret_data: dict[str, dict[str, str]], namespace: str) -> list[dict[str, Any]]:
    """secretKeyRef -> the Secret's value; fieldRef metadata.namespace -> the release namespace."""
    out = []
    for e in env:
        ref = e.get("valueFrom", {})
        if "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            e = {"name": e["name"], "value": secret_data[key["name"]][key["key"]]}
        elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            e = {"name": e["name"], "value": namespace}
        out.append(e)
    return out


def controller_config(objects: list[dict[str, Any]], ports: dict[str, tuple[int, int]], release: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The controller config with the stage services at 127.0.0.1:<port> and the Lease off, and the ConfigMap's files."""
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config")]
    config = yaml.safe_load(cm["data"]["controller.yaml"])
    for kind, target in config.get("services", {}).items():
        host = target.removeprefix("dns:///").split(":")[0]  # e.g. dns:///synthtune-dataprep-pods:50051
        component = host.removeprefix(f"{release}-").removesuffix("-pods")
        config["services"][kind] = f"127.0.0.1:{ports[component][0]}"
    config["leader"]["lease"] = False
    files = dict(cm["data"], **{"controller.yaml": yaml.safe_dump(config, sort_keys=False)})
    return config, files


def for_podman(objects: list[dict[str, Any]], ports: dict[str, tuple[int, int]], secret_data: dict[str, dict[str, str]],
               config_dir: Path, release: str, namespace: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rendered Deployments as `podman kube play` can start them on one host, and the controller config.

    podman has no Services, Secrets, ConfigMaps or cluster DNS: every pod joins the host network on
    ports of its own (args and probes move together; containerPorts go, as podman maps none on the
    host network), Secret references become values, the config map becomes a read-only host folder,
    and the controller reaches the stage services at 127.0.0.1:<port>. No Kubernetes API, so the
    leader Lease is off (one replica).
    """
    config, files = controller_config(objects, ports, release)
    config_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (config_dir / name).write_text(text)
    pods = []
    for dep in (o for o in objects if o["kind"] == "Deployment"):
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
            c["env"] = _resolve_env(c.get("env", []), secret_data, namespace)
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


def wait_ready(pods: list[dict[str, Any]], deadline: float) -> None:
    """Each readiness probe (grpc.health.v1 on its port and service) answered SERVING, asked from inside the container."""
    names = container_names(pods)
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
