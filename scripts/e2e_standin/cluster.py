"""A stand-in for a Kubernetes cluster: the `kubectl` and `helm` verbs docs/deploy.md uses, on podman.

Test harness code for `make e2e` (scripts/e2e.py), not a cluster client. scripts/e2e_standin/bin/kubectl
and bin/helm run it; the harness puts that folder first on PATH and runs docs/deploy.md's blocks.
It knows exactly these commands, and answers any other with "e2e stand-in: kubectl VERB not
supported" (exit 1), so a doc change that adds a command fails the test by name:

    kubectl create namespace NS             recorded in the state file
    kubectl label namespace NS K=V...       recorded
    kubectl -n NS create secret generic NAME --from-literal=K=V...   kept in the state file
    helm install RELEASE CHART -n NS --set K=V...   renders CHART with helm-python-sdk (the harness's
                                            values files, then the --set values on top, as helm -f/--set),
                                            turns the Deployments into pods (containers.for_podman: Secret
                                            references become the stored values) and `podman kube play`s them
    kubectl -n NS rollout status deploy/NAME [--timeout=Ns]   waits for that pod's readiness probe
    helm test RELEASE -n NS                 runs each test hook's container (its own command) on the host network
    kubectl -n NS port-forward svc/NAME L:R    a loopback TCP relay 127.0.0.1:L (and [::1]:L) -> the pod's port
    kubectl -n NS get secret NAME -o jsonpath='{.data.KEY}'      base64 of the stored value
    kubectl -n NS get configmap NAME -o jsonpath='{.data.KEY}'   the rendered ConfigMap's value

Unlike kubectl, a jsonpath naming a missing key is an error, not empty output. State: the JSON file
$E2E_STANDIN_STATE (see `new_state`).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from e2e_standin import containers


class Refused(Exception):
    """What kubectl or helm would refuse (or the stand-in does not support): printed, exit 1."""


def new_state(path: Path, work: Path, values_files: list[Path]) -> None:
    """A fresh state file: `work` holds each release's rendered files; `values_files` go under every --set."""
    path.write_text(json.dumps({"work": str(work), "values_files": [str(p) for p in values_files], "namespaces": {},
                                "secrets": {}, "releases": {}, "port_forwards": [], "errors": []}, indent=1))


def _state_path() -> Path:
    return Path(os.environ["E2E_STANDIN_STATE"])


def read_state() -> dict[str, Any]:
    return json.loads(_state_path().read_text())


@contextlib.contextmanager
def changing_state() -> Iterator[dict[str, Any]]:
    """The state, written back on exit, under a lock (a port-forward in the background writes too)."""
    path = _state_path()
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = json.loads(path.read_text())
        yield state
        path.write_text(json.dumps(state, indent=1))


def _options(args: list[str], flags: dict[str, str]) -> tuple[list[str], dict[str, list[str]], str]:
    """Positional words and the values of `flags` (each -x/--x VALUE or --x=VALUE; short -> long name)."""
    words: list[str] = []
    values: dict[str, list[str]] = {}
    it = iter(args)
    for arg in it:
        if not arg.startswith("-"):
            words.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name not in flags:
            return words, values, arg
        values.setdefault(flags[name], []).append(value if eq else next(it, ""))
    return words, values, ""


def _namespace(state: dict[str, Any], values: dict[str, list[str]]) -> str:
    ns = values.get("namespace", ["default"])[-1]
    if ns not in state["namespaces"]:
        raise Refused(f'namespaces "{ns}" not found')
    return ns


def _release_in(state: dict[str, Any], ns: str) -> tuple[str, dict[str, Any]]:
    found = [(name, rel) for name, rel in state["releases"].items() if rel["namespace"] == ns]
    if not found:
        raise Refused(f"e2e stand-in: no release installed in namespace {ns}")
    return found[0]


def _objects(release: dict[str, Any]) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(Path(release["objects"]).read_text()))


def _named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for o in objects:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise Refused(f'{kind.lower()}s "{name}" not found')


def _jsonpath(output: str, data: dict[str, str], what: str) -> str:
    m = re.fullmatch(r"jsonpath=\{\.data\.((?:[^.\\]|\\.)+)\}", output)
    if not m:
        raise Refused(f"e2e stand-in: kubectl get -o {output} not supported (only jsonpath='{{.data.KEY}}')")
    key = m.group(1).replace("\\.", ".")
    if key not in data:
        raise Refused(f"e2e stand-in: {what} has no key {key!r} (it has {sorted(data)})")
    return data[key]


def kubectl(args: list[str]) -> str:
    """Run one kubectl command; its standard output."""
    flags = {"-n": "namespace", "--namespace": "namespace", "-o": "output", "--output": "output",
             "--from-literal": "literal", "--timeout": "timeout"}
    words, values, bad = _options(args, flags)
    verb = " ".join(words[:2]) if words[:1] in (["create"], ["get"], ["label"], ["rollout"]) else " ".join(words[:1])
    if bad:
        raise Refused(f"e2e stand-in: kubectl {verb} flag {bad} not supported")
    with changing_state() as state:
        if words[:2] == ["create", "namespace"] and len(words) == 3:
            if words[2] in state["namespaces"]:
                raise Refused(f'namespaces "{words[2]}" already exists')
            state["namespaces"][words[2]] = {"labels": {}}
            return f"namespace/{words[2]} created\n"
        if words[:2] == ["label", "namespace"] and len(words) >= 4 and all("=" in w for w in words[3:]):
            values["namespace"] = [words[2]]
            state["namespaces"][_namespace(state, values)]["labels"].update(w.split("=", 1) for w in words[3:])
            return f"namespace/{words[2]} labeled\n"
        if words[:3] == ["create", "secret", "generic"] and len(words) == 4 and values.get("literal"):
            ns = _namespace(state, values)
            secrets = state["secrets"].setdefault(ns, {})
            if words[3] in secrets:
                raise Refused(f'secrets "{words[3]}" already exists')
            if not all("=" in lit for lit in values["literal"]):
                raise Refused(f"--from-literal takes KEY=VALUE, not {values['literal']}")
            secrets[words[3]] = dict(lit.split("=", 1) for lit in values["literal"])
            return f"secret/{words[3]} created\n"
    state = read_state()
    if words[:2] == ["get", "secret"] and len(words) == 3:
        ns = _namespace(state, values)
        if words[2] not in state["secrets"].get(ns, {}):
            raise Refused(f'secrets "{words[2]}" not found')
        value = _jsonpath(values.get("output", [""])[-1], state["secrets"][ns][words[2]], f"secret {words[2]}")
        return base64.b64encode(value.encode()).decode()
    if words[:2] == ["get", "configmap"] and len(words) == 3:
        _, release = _release_in(state, _namespace(state, values))
        cm = _named(_objects(release), "ConfigMap", words[2])
        return _jsonpath(values.get("output", [""])[-1], cm["data"], f"configmap {words[2]}")
    if words[:2] == ["rollout", "status"] and len(words) == 3 and words[2].split("/")[0] in ("deploy", "deployment"):
        return rollout_status(state, _namespace(state, values), words[2].split("/", 1)[1], values.get("timeout", ["300s"])[-1])
    if words[:1] == ["port-forward"] and len(words) == 3 and words[1].split("/")[0] in ("svc", "service"):
        local, _, remote = words[2].partition(":")
        port_forward(state, _namespace(state, values), words[1].split("/", 1)[1], int(local), int(remote or local))
        return ""
    raise Refused(f"e2e stand-in: kubectl {verb or '(no verb)'} not supported")


def rollout_status(state: dict[str, Any], ns: str, name: str, timeout: str) -> str:
    _, release = _release_in(state, ns)
    pods = [p for p in yaml.safe_load_all(Path(release["kube"]).read_text()) if p["metadata"]["name"] == name]
    if not pods:
        raise Refused(f'deployments.apps "{name}" not found')
    containers.wait_ready(pods, time.monotonic() + float(timeout.rstrip("s")))
    return f'deployment "{name}" successfully rolled out\n'


def _target_port(objects: list[dict[str, Any]], ports: dict[str, list[int]], service: str, port: int) -> int:
    """The host port the stand-in's pod listens on for `service`'s `port`."""
    svc = _named(objects, "Service", service)
    component = svc["spec"]["selector"]["app.kubernetes.io/component"]
    for p in svc["spec"]["ports"]:
        if p["port"] == port:
            return ports[component][["grpc", "metrics"].index(p["targetPort"])]
    raise Refused(f"service {service} has no port {port}")


def port_forward(state: dict[str, Any], ns: str, service: str, local: int, remote: int) -> None:
    """Relay 127.0.0.1:local (and [::1]:local where the host has IPv6) to the pod, until killed."""
    _, release = _release_in(state, ns)
    target = ("127.0.0.1", _target_port(_objects(release), release["ports"], service, remote))
    listeners = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(family)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, local))
        except OSError as exc:
            s.close()
            if family == socket.AF_INET6 and exc.errno != 98:  # no IPv6 here; a taken port is an error
                continue
            _port_taken(f"unable to listen on port {local}: {host}:{local}: {exc.strerror}")
        s.listen(64)
        listeners.append(s)
    with changing_state() as st:
        st["port_forwards"].append(os.getpid())
    print(f"Forwarding from 127.0.0.1:{local} -> {remote}", flush=True)
    relay(listeners, target)


def _port_taken(message: str) -> None:
    """A background port-forward cannot fail the script by its exit code: stop the script too (E2E_SCRIPT_PID)."""
    with changing_state() as st:
        st["errors"].append(f"kubectl port-forward: {message}")
    if os.environ.get("E2E_SCRIPT_PID"):
        os.kill(int(os.environ["E2E_SCRIPT_PID"]), signal.SIGTERM)
    raise Refused(message)


def relay(listeners: list[socket.socket], target: tuple[str, int]) -> None:
    """Accept on `listeners` forever; each connection is piped both ways to `target`."""
    sel = selectors.DefaultSelector()
    for s in listeners:
        sel.register(s, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
            threading.Thread(target=_serve, args=(conn, target), daemon=True).start()


def _serve(conn: socket.socket, target: tuple[str, int]) -> None:
    try:
        up = socket.create_connection(target, timeout=10)
    except OSError as exc:
        print(f"e2e stand-in: port-forward: cannot reach {target[0]}:{target[1]}: {exc}", file=sys.stderr, flush=True)
        conn.close()
        return
    up.settimeout(None)
    back = threading.Thread(target=_pipe, args=(up, conn), daemon=True)
    back.start()
    _pipe(conn, up)
    back.join()
    conn.close()
    up.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def helm(args: list[str]) -> str:
    """Run one helm command; its standard output."""
    words, values, bad = _options(args, {"-n": "namespace", "--namespace": "namespace", "--set": "set"})
    verb = words[0] if words else "(no verb)"
    if bad:
        raise Refused(f"e2e stand-in: helm {verb} flag {bad} not supported")
    if words[:1] == ["install"] and len(words) == 3:
        with changing_state() as state:
            return install(state, words[1], Path(words[2]), _namespace(state, values), values.get("set", []))
    if words[:1] == ["test"] and len(words) == 2 and "set" not in values:
        state = read_state()
        return helm_test(state, words[1], _namespace(state, values))
    raise Refused(f"e2e stand-in: helm {verb} not supported")


def _secret_refs(objects: list[dict[str, Any]]) -> set[str]:
    refs = set()
    for o in objects:
        for c in o["spec"]["template"]["spec"]["containers"] if o["kind"] == "Deployment" else []:
            refs |= {e["valueFrom"]["secretKeyRef"]["name"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
            refs |= {src["secretRef"]["name"] for src in c.get("envFrom", [])}
    return refs


def install(state: dict[str, Any], release: str, chart: Path, ns: str, sets: list[str]) -> str:
    import helm_python

    if release in state["releases"]:
        raise Refused("INSTALLATION FAILED: cannot re-use a name that is still in use")
    values: dict[str, Any] = {}
    for path in state["values_files"]:
        values = containers.deep_merge(values, yaml.safe_load(Path(path).read_text()) or {})
    for expression in sets:
        values = containers.deep_merge(values, helm_python.parse_set_string(expression))
    try:
        objects, notes = containers.render(chart, values, release, ns)
    except Exception as exc:  # the chart's own message (a required value, the schema)
        raise Refused(f"INSTALLATION FAILED: {exc}") from exc
    missing = _secret_refs(objects) - set(state["secrets"].get(ns, {}))
    if missing:
        raise Refused(f"e2e stand-in: the pods reference Secrets missing from namespace {ns}: {sorted(missing)}")
    work = Path(state["work"]) / release
    components = [o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects if o["kind"] == "Deployment"]
    free = containers.free_ports(2 * len(components))
    ports = {c: (free[2 * i], free[2 * i + 1]) for i, c in enumerate(components)}
    pods, _ = containers.for_podman([o for o in objects if containers.HOOK not in o["metadata"].get("annotations", {})],
                                    ports, state["secrets"][ns], work / "config", release, ns)
    (work / "objects.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    (work / "kube.yaml").write_text(yaml.safe_dump_all(pods, sort_keys=False))
    state["releases"][release] = {"namespace": ns, "objects": str(work / "objects.yaml"), "kube": str(work / "kube.yaml"),
                                  "ports": ports, "values": values}
    containers.sh(containers.STANDIN, "kube", str(work / "kube.yaml"))
    return f"NAME: {release}\nNAMESPACE: {ns}\nSTATUS: deployed\nREVISION: 1\nNOTES:\n{notes}\n"


def helm_test(state: dict[str, Any], release: str, ns: str) -> str:
    """Each `helm.sh/hook: test` Pod's containers, run with their own command, Service names -> the pods' ports."""
    if state["releases"].get(release, {}).get("namespace") != ns:
        raise Refused(f"release: not found ({release} in {ns})")
    rel = state["releases"][release]
    objects = _objects(rel)
    services = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    out = [f"NAME: {release}", f"NAMESPACE: {ns}", "STATUS: deployed"]
    hooks = [o for o in objects if o["kind"] == "Pod" and "test" in o["metadata"].get("annotations", {}).get(containers.HOOK, "")]
    if not hooks:
        raise Refused(f"e2e stand-in: release {release} has no test hook")
    for pod in hooks:
        for c in pod["spec"]["containers"]:
            args = []
            for a in c.get("args", []):
                m = re.fullmatch(r"([a-z0-9-]+):(\d+)", a)
                args.append(f"127.0.0.1:{_target_port(objects, rel['ports'], m[1], int(m[2]))}" if m and m[1] in services else a)
            run = containers.sh(containers.STANDIN, "run", "--rm", "--pull", "never", "--network", "host", "--read-only",
                                "--tmpfs", "/tmp", "--entrypoint", json.dumps(c["command"]), c["image"], *args,
                                check=False, capture=True, timeout=300)
            if run.returncode != 0:
                raise Refused(f"pod {pod['metadata']['name']} failed (exit {run.returncode}):\n{run.stdout}{run.stderr}")
            sys.stderr.write(run.stdout)
        out += [f"TEST SUITE:     {pod['metadata']['name']}", "Phase:          Succeeded"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    tool, args = argv[0], argv[1:]
    try:
        sys.stdout.write(kubectl(args) if tool == "kubectl" else helm(args))
    except Refused as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # containers.wait_ready's message
        print(exc, file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"Error: e2e stand-in: {' '.join(map(str, exc.cmd))} exited {exc.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
