"""A small Kubernetes API server double: the real REST protocol over HTTP on 127.0.0.1.

The official ``kubernetes`` client talks to it as to a cluster (``KubeAPI.api_client()``):
batch/v1 Jobs, v1 Pods (and their logs) and Events, coordination.k8s.io/v1 Leases, and
ray.io/v1 RayJobs once a test calls ``install_crd()``. Create answers 201 (409 when the name is taken),
PUT checks the resourceVersion (409 when stale), list and watch honour labelSelector and
fieldSelector, a watch (``?watch=true``) streams JSON lines in HTTP chunks: ADDED for what
exists, then every change, until ``timeoutSeconds``. Discovery (/api, /apis/, /apis/<g>/<v>)
lists what is installed. Every request lands in ``calls``; ``faults`` makes the next matching
requests fail (a 5xx, a 429, an expired watch).

There are no controllers here: tests play them with ``set_status()``, or with the helpers of
cluster.py (pods, Events, running a Job's request with the real entry point).
"""

from __future__ import annotations

import copy
import datetime as dt
import fnmatch
import itertools
import json
import random
import re
import string
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

JOBS, PODS, LEASES, RAYJOBS = "batch/v1/jobs", "v1/pods", "coordination.k8s.io/v1/leases", "ray.io/v1/rayjobs"
EVENTS = "v1/events"
KINDS = {JOBS: "Job", PODS: "Pod", LEASES: "Lease", RAYJOBS: "RayJob", EVENTS: "Event"}
FIELDS = {EVENTS: ("involvedObject.name", "involvedObject.kind", "reason", "type")}  # beyond metadata.name/namespace
WITH_STATUS = {JOBS, PODS, RAYJOBS}  # PUT on the object keeps the status; PUT on /status changes only it
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
TERM = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "code": self.code}


def selected(obj: dict[str, Any], query: dict[str, str], resource: str = "") -> bool:
    """labelSelector (k=v, k==v, k!=v, k, !k, k in (..), k notin (..)) and fieldSelector (a.b=v, a.b!=v)."""
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", query.get("labelSelector", "")):
        m = TERM.match(term)
        if not m:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
        neg, key, op, val, setop, vals = m.groups()
        if op in ("=", "=="):
            ok = labels.get(key) == val
        elif op == "!=":
            ok = labels.get(key) != val
        elif setop:
            ok = (key in labels and labels[key] in {v.strip() for v in vals.split(",")}) == (setop == "in")
        else:
            ok = (key in labels) != bool(neg)
        if not ok:
            return False
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        m = re.match(r"^([\w.]+)(!=|==|=)(.*)$", term)
        if not m or m.group(1) not in ("metadata.name", "metadata.namespace", *FIELDS.get(resource, ())):
            raise ApiError(400, "BadRequest", f'field label not supported: "{term}"')
        value: Any = obj
        for part in m.group(1).split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if (value == m.group(3)) != (m.group(2) != "!="):
            return False
    return True


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386): dicts merge, anything else replaces, None deletes."""
    for key, value in patch.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


class KubeAPI:
    def __init__(self, namespace: str = "default") -> None:
        self.namespace = namespace
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (resource, namespace, name) -> object
        self.events: list[tuple[int, str, str, dict[str, Any]]] = []  # (resourceVersion, type, resource, object)
        self.calls: list[Call] = []
        self.logs: dict[tuple[str, str], str] = {}  # (namespace, pod) -> log text
        self.resources = {JOBS, PODS, LEASES, EVENTS}
        self.autorun: Callable[[str, str], Any] | None = None  # (resource, name) of each created Job/RayJob
        self.faults: list[tuple[str, int]] = []  # (path glob, status): the next matching request fails with it
        self._rv = itertools.count(1)
        self._cond = threading.Condition(threading.RLock())
        self._stopping = False
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def api_client(self) -> Any:
        from kubernetes import client

        return client.ApiClient(client.Configuration(host=self.url))

    def install_crd(self, resource: str = RAYJOBS) -> None:
        self.resources.add(resource)

    # the REST protocol --------------------------------------------------------------------
    def handle(self, req: _Handler, call: Call) -> tuple[int, Any] | None:
        parts = [p for p in call.path.split("/") if p]
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self.url[7:]}]}
        if parts == ["apis"]:
            gvs = sorted({r.rsplit("/", 1)[0] for r in self.resources if r.count("/") == 2})
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}} for gv in gvs]}
        gv_len = 1 if parts[:1] == ["api"] else 2
        gv, rest = "/".join(parts[1:1 + gv_len]), parts[1 + gv_len:]
        if not rest:
            found = sorted(r for r in self.resources if r.rsplit("/", 1)[0] == gv)
            if not found:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
                {"name": r.rsplit("/", 1)[1] + sub, "singularName": KINDS[r].lower() if not sub else "", "namespaced": True,
                 "kind": KINDS[r], "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
                for r in found for sub in ("", "/status")]}
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        resource, name, sub = f"{gv}/{rest[0]}", (rest[1:2] or [None])[0], (rest[2:3] or [None])[0]
        if resource not in self.resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        method, q = call.method, call.query
        with self._cond:
            fault = next((f for f in self.faults if fnmatch.fnmatch(call.path, f[0])), None)
            if fault:
                self.faults.remove(fault)
        if fault and fault[1] == 410 and q.get("watch") in ("true", "1"):  # an expired watch: one ERROR event
            req.start_stream()
            req.chunk({"type": "ERROR", "object": ApiError(410, "Expired", "too old resource version").status()})
            req.end_stream()
            return None
        if fault:
            raise ApiError(fault[1], "ServiceUnavailable" if fault[1] == 503 else "Error", "injected by the test")
        if name is None and method == "GET" and q.get("watch") in ("true", "1"):
            self._watch(req, resource, ns, q)
            return None
        if name is None and method == "GET":
            with self._cond:
                items = [copy.deepcopy(o) for (r, n, _), o in sorted(self.objects.items())
                         if r == resource and ns in (None, n) and selected(o, q, resource)]
                rv = str(self.events[-1][0] if self.events else 0)
            return 200, {"kind": KINDS[resource] + "List", "apiVersion": gv, "metadata": {"resourceVersion": rv}, "items": items}
        if name is None and method == "POST" and ns:
            return 201, self.create(resource, ns, call.body)
        if name is None or ns is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} {call.path} is not supported here")
        if method == "GET" and sub == "log" and resource == PODS:
            self._find(resource, ns, name)
            lines = self.logs.get((ns, name), "").splitlines(keepends=True)
            return 200, "".join(lines[-int(q["tailLines"]):] if q.get("tailLines") else lines)
        if method == "GET":
            return 200, copy.deepcopy(self._find(resource, ns, name))
        if method == "PUT":
            return 200, self.replace(resource, ns, name, call.body, status_only=sub == "status")
        if method == "PATCH":
            with self._cond:
                return 200, self._store(resource, merge(copy.deepcopy(self._find(resource, ns, name)), call.body), "MODIFIED")
        if method == "DELETE":
            return 200, self.delete(resource, ns, name, q.get("propagationPolicy") or (call.body or {}).get("propagationPolicy"))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _find(self, resource: str, ns: str, name: str) -> dict[str, Any]:
        with self._cond:
            if (resource, ns, name) not in self.objects:
                raise ApiError(404, "NotFound", f'{resource.rsplit("/", 1)[1]} "{name}" not found')
            return self.objects[resource, ns, name]

    def _store(self, resource: str, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        with self._cond:
            rv = next(self._rv)
            obj["metadata"]["resourceVersion"] = str(rv)
            key = (resource, obj["metadata"]["namespace"], obj["metadata"]["name"])
            if kind == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj
            self.events.append((rv, kind, resource, copy.deepcopy(obj)))
            self._cond.notify_all()
            return copy.deepcopy(obj)

    def create(self, resource: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        name = meta.get("name") or meta.get("generateName", "") + "".join(random.choices(string.ascii_lowercase, k=5))
        if not NAME.match(name) or (resource == JOBS and len(name) > 63):
            raise ApiError(422, "Invalid", f'{KINDS[resource]} "{name}" is invalid: metadata.name: Invalid value')
        if resource == JOBS:
            self._admit_job(name, body)
        with self._cond:
            if (resource, ns, name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{resource.rsplit("/", 1)[1]} "{name}" already exists')
            meta.update(name=name, namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
            if resource == JOBS:
                labels = {"batch.kubernetes.io/controller-uid": meta["uid"], "batch.kubernetes.io/job-name": name,
                          "controller-uid": meta["uid"], "job-name": name}
                body["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(labels)
                body["spec"].setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}})
                body["status"] = {}
            created = self._store(resource, body, "ADDED")
        if self.autorun and resource in (JOBS, RAYJOBS):
            threading.Thread(target=self.autorun, args=(resource, name), daemon=True).start()
        return created

    @staticmethod
    def _admit_job(name: str, job: dict[str, Any]) -> None:
        """The API server's own checks of a Job that the schema cannot express."""
        spec, errors = job.get("spec", {}), []
        pod = spec.get("template", {}).get("spec", {})
        containers = {c.get("name") for c in pod.get("containers", [])}
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            errors.append("spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"")
        for i, rule in enumerate((spec.get("podFailurePolicy") or {}).get("rules", [])):
            if pod.get("restartPolicy") != "Never":
                errors.append("spec.podFailurePolicy: Invalid value: only \"Never\" is supported")
            codes = rule.get("onExitCodes") or {}
            if codes.get("containerName") and codes["containerName"] not in containers:
                errors.append(f"spec.podFailurePolicy.rules[{i}].onExitCodes.containerName: Invalid value: "
                              f"{codes['containerName']!r}: must be one of the container or initContainer names")
            if codes.get("operator") == "In" and 0 in codes.get("values", []):
                errors.append(f"spec.podFailurePolicy.rules[{i}].onExitCodes.values: Invalid value: 0")
        if errors:
            raise ApiError(422, "Invalid", f'Job.batch "{name}" is invalid: {"; ".join(errors)}')

    def replace(self, resource: str, ns: str, name: str, body: dict[str, Any], status_only: bool = False) -> dict[str, Any]:
        with self._cond:
            current = self._find(resource, ns, name)
            rv = body.get("metadata", {}).get("resourceVersion")
            if rv and rv != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource.rsplit("/", 1)[1]} "{name}": '
                                                "the object has been modified; please apply your changes to the latest version and try again")
            new = copy.deepcopy(current) if status_only else copy.deepcopy(body)
            if status_only or resource in WITH_STATUS:
                new["status"] = copy.deepcopy(body.get("status") if status_only else current.get("status"))
            for key in ("name", "namespace", "uid", "creationTimestamp"):
                new.setdefault("metadata", {})[key] = current["metadata"][key]
            return self._store(resource, new, "MODIFIED")

    def delete(self, resource: str, ns: str, name: str, propagation: str | None) -> dict[str, Any]:
        with self._cond:
            obj = copy.deepcopy(self._find(resource, ns, name))
            self._store(resource, obj, "DELETED")
            if propagation in ("Background", "Foreground"):  # the garbage collector; batch/v1 Jobs orphan by default
                for (r, n, _), o in list(self.objects.items()):
                    if n == ns and any(ref.get("uid") == obj["metadata"]["uid"] for ref in o["metadata"].get("ownerReferences", [])):
                        self._store(r, copy.deepcopy(o), "DELETED")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": resource.rsplit("/", 1)[1], "uid": obj["metadata"]["uid"]}}

    def _watch(self, req: _Handler, resource: str, ns: str | None, q: dict[str, str]) -> None:
        deadline = time.monotonic() + float(q.get("timeoutSeconds") or 1800)
        with self._cond:
            since = q.get("resourceVersion")
            if since and since != "0":
                pos, initial = next((i for i, e in enumerate(self.events) if e[0] > int(since)), len(self.events)), []
            else:
                pos = len(self.events)
                initial = [("ADDED", copy.deepcopy(o)) for (r, n, _), o in sorted(self.objects.items())
                           if r == resource and ns in (None, n) and selected(o, q, resource)]
        req.start_stream()
        try:
            for kind, obj in initial:
                req.chunk({"type": kind, "object": obj})
            while True:
                with self._cond:
                    while pos >= len(self.events) and not self._stopping and time.monotonic() < deadline:
                        self._cond.wait(deadline - time.monotonic())
                    batch, pos = self.events[pos:], len(self.events)
                for _, kind, r, obj in batch:
                    if r == resource and ns in (None, obj["metadata"]["namespace"]) and selected(obj, q, resource):
                        req.chunk({"type": kind, "object": obj})
                if self._stopping or time.monotonic() >= deadline:
                    break
            req.end_stream()
        except OSError:  # the client went away (it stops reading once it has what it waited for)
            pass

    # test side ----------------------------------------------------------------------------
    def get(self, resource: str, name: str, ns: str | None = None) -> dict[str, Any] | None:
        with self._cond:
            obj = self.objects.get((resource, ns or self.namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, resource: str, ns: str | None = None, **query: str) -> list[dict[str, Any]]:
        with self._cond:
            return [copy.deepcopy(o) for (r, n, _), o in sorted(self.objects.items())
                    if r == resource and n == (ns or self.namespace) and selected(o, query, resource)]

    def called(self, method: str, pattern: str, status: int | None = None) -> list[Call]:
        """Calls whose method and path (a glob) match, e.g. ``called("DELETE", "*/jobs/*")``."""
        return [c for c in list(self.calls) if c.method == method and fnmatch.fnmatch(c.path, pattern)
                and status in (None, c.status)]

    def wait_for(self, check: Callable[[], Any], timeout: float = 10.0, what: str = "a condition") -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if result := check():
                return result
            time.sleep(0.01)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def set_status(self, resource: str, name: str, status: dict[str, Any], ns: str | None = None) -> dict[str, Any]:
        with self._cond:
            obj = copy.deepcopy(self._find(resource, ns or self.namespace, name))
            obj["status"] = merge(obj.get("status") or {}, status)
            return self._store(resource, obj, "MODIFIED")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: KubeAPI

    def log_message(self, format: str, *args: Any) -> None:  # `format`: the base class's name
        pass

    def _handle(self) -> None:
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        call = Call(self.command, url.path, dict(parse_qsl(url.query)), json.loads(raw) if raw.strip() else None)
        self.api.calls.append(call)
        try:
            result = self.api.handle(self, call)
        except ApiError as exc:
            result = exc.code, exc.status()
        if result is None:
            call.status = 200
            return
        call.status, payload = result
        text = isinstance(payload, str)
        data = payload.encode() if text else json.dumps(payload).encode()
        self.send_response(call.status)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
