#!/usr/bin/env python3
"""`make e2e`: docs/deploy.md's commands, run in the order written, against the chart's containers.

Takes the `<!-- e2e: settings -->` block and every `<!-- e2e -->` bash block of docs/deploy.md in
document order and runs them as one bash script (`set -euo pipefail`), with the settings replaced by
the harness's own: a moto S3 server on loopback with fresh random keys, the locally built images
(localhost/synthtune-<name>:<tag>) and the embedded SmolLM2-135M as a model folder for BASE_MODEL.
`kubectl` and `helm` are stand-ins (scripts/e2e_standin/cluster.py: the chart rendered with
helm-python-sdk, its Deployments started with `podman kube play`); `synthtune` is the real CLI.
Afterwards it checks the run record, every artifact's files against its manifest in S3, the
downloaded report, and each container's readiness probe. docs/deploy.md ("End-to-end test") lists
what differs from a cluster.

    scripts/e2e.py [--keep] [--image-tag dev] [--timeout 1800]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_standin import cluster, containers
from e2e_standin.containers import REPO, log

DOC = REPO / "docs" / "deploy.md"
VALUES = REPO / "helm" / "synthtune" / "ci" / "e2e-values.yaml"
STANDIN_BIN = Path(__file__).resolve().parent / "e2e_standin" / "bin"
BUCKET, PREFIX = "synthtune", "e2e"
SETTINGS = ("SYNTHTUNE_STORE", "SYNTHTUNE_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "IMAGE_REPOSITORY", "BASE_MODEL")
MARKER = re.compile(r"^<!-- (e2e(?::[^>]*)?) -->$")


class DocError(Exception):
    """docs/deploy.md cannot be run as the end-to-end path (the message names the line)."""


def doc_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, marker, bash) for each marked block, in document order; a marker must precede a ```bash block."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        if m[1] not in ("e2e", "e2e: settings"):
            raise DocError(f"line {i + 1}: unknown marker <!-- {m[1]} --> (known: e2e, e2e: settings)")
        if i + 1 >= len(lines) or lines[i + 1].strip() != "```bash":
            raise DocError(f"line {i + 1}: <!-- {m[1]} --> is not followed by a ```bash block")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise DocError(f"line {i + 2}: the ```bash block is never closed")
        out.append((i + 3, m[1], "\n".join(lines[i + 2:end])))
    return out


def doc_script(text: str, settings: dict[str, str]) -> str:
    """The settings block (replaced by `settings`) and every e2e block, as one bash script."""
    blocks = doc_blocks(text)
    marked = [b for b in blocks if b[1] == "e2e: settings"]
    if len(marked) != 1:
        raise DocError(f"expected one <!-- e2e: settings --> block, found {len(marked)}")
    if blocks[0][1] != "e2e: settings":
        raise DocError(f"line {blocks[0][0]}: an e2e block comes before the settings block (line {marked[0][0]})")
    if len(blocks) < 2:
        raise DocError("no <!-- e2e --> block to run")
    exported = re.findall(r"(\w+)=", marked[0][2])
    if sorted(exported) != sorted(settings):
        raise DocError(f"line {marked[0][0]}: the settings block exports {sorted(exported)}; the harness sets {sorted(settings)}")
    parts = ["set -euo pipefail", "export E2E_SCRIPT_PID=$$",
             f": docs/deploy.md line {marked[0][0]}, the settings: the harness values in place of the doc ones"]
    parts += [f"export {k}={shlex.quote(v)}" for k, v in settings.items()]
    for line, _, block in blocks[1:]:
        parts += [f": docs/deploy.md line {line}", block]  # a no-op bash traces (-x), unlike a comment
    return "\n".join(parts) + "\n"


def start_moto() -> tuple[Any, str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = containers.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def s3_client(endpoint: str, creds: dict[str, str]) -> Any:
    from minio import Minio

    return Minio(endpoint.split("://", 1)[1], access_key=creds["AWS_ACCESS_KEY_ID"], secret_key=creds["AWS_SECRET_ACCESS_KEY"],
                 secure=False, region="us-east-1")


def base_model_folder() -> str:
    """The embedded SmolLM2-135M as a transformers folder (the product converts its GGUF once; no hub)."""
    from synthtune.llm.models import EMBEDDED_DEFAULT, resolve_model

    return resolve_model(EMBEDDED_DEFAULT)


def check_store(client: Any, run_id: str) -> None:
    """run.json says succeeded, the report is there, and every artifact's files match its manifest."""
    run = json.loads(client.get_object(BUCKET, f"{PREFIX}/runs/{run_id}/run.json").read())
    assert run["status"] == "succeeded", f"run.json status {run['status']!r}"
    log(f"run.json: {json.dumps({k: v for k, v in run.items() if k != 'spec_yaml'})[:2000]}")
    assert run.get("report"), f"run.json has no report: {sorted(run)}"
    manifests = [o.object_name for o in client.list_objects(BUCKET, f"{PREFIX}/artifacts/", recursive=True)
                 if o.object_name.endswith("/manifest.json")]
    assert manifests, f"no artifacts under s3://{BUCKET}/{PREFIX}/artifacts/"
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
    missing = {"prepared", "synthetic", "adapter", "evaluation"} - set(kinds)
    assert not missing, f"the run made no {sorted(missing)} artifact (kinds: {sorted(set(kinds))})"
    models = [o.object_name for o in client.list_objects(BUCKET, f"{PREFIX}/models/", recursive=True)]
    assert f"{PREFIX}/models/plant-base/model.json" in models, f"no pushed model in the store: {models[:10]}"


def check_report(folder: Path, run_id: str) -> None:
    """`synthtune report --out report/` gave the HTML report of this run and its numbers."""
    html = (folder / "report.html").read_text()
    assert run_id in html and "<html" in html.lower(), f"{folder}/report.html ({len(html)} chars) is not the report of {run_id}"
    numbers = json.loads((folder / "report.json").read_text())
    log(f"report: {folder}/report.html {len(html)} chars, report.json keys {sorted(numbers)[:12]}")


def the_run(client: Any) -> str:
    runs = sorted({o.object_name.split("/")[2] for o in client.list_objects(BUCKET, f"{PREFIX}/runs/", recursive=True)})
    assert len(runs) == 1, f"expected the doc's one run in the store, found {runs}"
    return runs[0]


def scratch_clone(work: Path) -> Path:
    """The doc runs `from a clone`: the files it reads, linked; it writes pipeline.yaml and report/ here."""
    clone = work / "clone"
    clone.mkdir()
    for name in ("examples", "helm"):
        (clone / name).symlink_to(REPO / name)
    return clone


def script_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTHTUNE_", "AWS_", "KUBECONFIG"))}
    env.update(PATH=f"{STANDIN_BIN}:{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}", E2E_STANDIN_STATE=str(state),
               E2E_PYTHON=sys.executable, PYTHONPATH=str(REPO / "services"), STANDIN=containers.STANDIN)
    return env


def teardown(state_file: Path) -> None:
    if not state_file.exists():
        return
    state = json.loads(state_file.read_text())
    for pid in state["port_forwards"]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for release in state["releases"].values():
        containers.sh(containers.STANDIN, "kube", "--down", release["kube"], check=False)


def all_pods(state_file: Path) -> list[dict[str, Any]]:
    state = json.loads(state_file.read_text())
    return [p for rel in state["releases"].values() for p in yaml.safe_load_all(Path(rel["kube"]).read_text())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image-tag", default=os.environ.get("IMAGE_TAG", "dev"))
    ap.add_argument("--image-prefix", default=os.environ.get("IMAGE_PREFIX", "localhost"))
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run (default 1800)")
    ap.add_argument("--keep", action="store_true", help="leave the pods, moto and the work folder for a look")
    opts = ap.parse_args(argv)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="synthtune-e2e-"))
    work.chmod(0o755)
    creds = {"AWS_ACCESS_KEY_ID": "e2e-" + secrets.token_hex(4), "AWS_SECRET_ACCESS_KEY": secrets.token_hex(16)}
    server, endpoint = start_moto()
    client = s3_client(endpoint, creds)
    client.make_bucket(BUCKET)
    settings = {"SYNTHTUNE_STORE": f"s3://{BUCKET}/{PREFIX}", "SYNTHTUNE_S3_ENDPOINT": endpoint, **creds,
                "IMAGE_REPOSITORY": opts.image_prefix, "BASE_MODEL": base_model_folder()}
    script = work / "deploy.sh"
    script.write_text(doc_script(DOC.read_text(), settings))
    overrides = work / "harness-values.yaml"
    overrides.write_text(yaml.safe_dump({"image": {"tag": opts.image_tag}}))
    state = work / "state.json"
    cluster.new_state(state, work / "cluster", [VALUES, overrides])
    clone = scratch_clone(work)
    log(f"store: moto S3 at {endpoint}; work folder {work}; running {DOC.relative_to(REPO)}'s e2e blocks ({script})")
    ok = False
    try:
        containers.check_entrypoints(opts.image_prefix, opts.image_tag)
        rc = subprocess.run(["bash", "-x", str(script)], cwd=clone, env=script_env(state),
                            timeout=max(60.0, opts.timeout - (time.monotonic() - started))).returncode
        errors = json.loads(state.read_text())["errors"]
        if rc != 0 or errors:
            raise SystemExit(f"e2e failed: the docs/deploy.md script exited {rc}" + "".join(f"\n  {e}" for e in errors))
        run_id = the_run(client)
        check_store(client, run_id)
        check_report(clone / "report", run_id)
        containers.wait_ready(all_pods(state), time.monotonic() + 120)  # still ready after the run
        ok = True
        log(f"e2e passed in {time.monotonic() - started:.0f} s (run {run_id})")
    finally:
        if not ok and state.exists():
            for name in containers.container_names(all_pods(state)).values():
                print(containers.logs(name), file=sys.stderr)
        if not opts.keep:
            teardown(state)
            server.stop()
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("e2e: terminated"))  # still take the pods down
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        sys.exit(f"e2e failed: {' '.join(map(str, exc.cmd))} exited {exc.returncode}")
    except subprocess.TimeoutExpired as exc:
        sys.exit(f"e2e failed: the docs/deploy.md script ran past {exc.timeout:.0f} s")
    except (AssertionError, DocError) as exc:
        sys.exit(f"e2e failed: {exc}")
