"""The three Dockerfiles: hadolint clean, and parsed: pinned bases, multi-stage, non-root, health checks, no secrets."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import REPO

DOCKERFILES = sorted(REPO.glob("Dockerfile.*"))
IDS = [p.name for p in DOCKERFILES]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path.name}: dangling line continuation"
    return out


def args_of(path: Path, name: str) -> list[str]:
    return [rest for word, rest in instructions(path) if word == name]


def test_three_images():
    assert IDS == ["Dockerfile.evaluator", "Dockerfile.generator", "Dockerfile.trainer"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_hadolint_is_clean(path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_bases_are_pinned_and_builds_are_multi_stage(path):
    froms = [shlex.split(rest) for rest in args_of(path, "FROM")]
    assert len(froms) >= 2, "multi-stage: build or fetch in one stage, run from another"
    stages: set[str] = set()
    for words in froms:
        image = words[0]
        if image.lower() not in stages:
            name, _, tag = image.rpartition(":")
            assert name and "/" not in tag, f"{image}: base image without a tag"
            assert tag != "latest" and re.search(r"\d", tag), f"{image}: pin a version, not {tag!r}"
        if len(words) == 3 and words[1].upper() == "AS":
            stages.add(words[2].lower())


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_runs_as_a_non_root_user(path):
    users = args_of(path, "USER")
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root") and uid.isdigit(), f"final USER {users[-1]!r}: use a numeric non-root uid (runAsNonRoot checks it)"
    assert int(uid) == 10001, "the chart's podSecurityContext.runAsUser and k8s/ manifests use 10001"
    # The last USER comes after the last RUN, so nothing in the final image was left to root by mistake.
    words = [w for w, _ in instructions(path)]
    assert max(i for i, w in enumerate(words) if w == "USER") > max(i for i, w in enumerate(words) if w == "RUN")


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_health_check_and_exec_form_entrypoint(path):
    (health,) = args_of(path, "HEALTHCHECK")
    assert health.upper() != "NONE"
    cmd = health[health.index("CMD") + 3:].strip()
    assert json.loads(cmd)[0].startswith("python"), "exec form, no shell"
    assert "grpc_health" in cmd and "SYNTHTUNE_HEALTH_PORT" in cmd
    (entrypoint,) = args_of(path, "ENTRYPOINT")
    assert isinstance(json.loads(entrypoint), list), "exec form, so signals reach the process"
    assert "50051" in args_of(path, "EXPOSE")[0] and "9090" in args_of(path, "EXPOSE")[0]


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_no_secrets_and_pinned_installs(path):
    for word, rest in instructions(path):
        if word in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", rest) or [rest.split()[0]]
            for name in names:
                assert not re.search(r"KEY|SECRET|TOKEN|PASSWORD", name, re.I), f"{word} {name}: secrets never go into images"
        if word == "RUN":
            for cmd in rest.split("&&"):
                if not re.search(r"\bpip install\b", cmd):
                    continue
                tokens = shlex.split(cmd)
                tail = tokens[tokens.index("install") + 1:]
                constrained = "-c" in tail
                for i, token in enumerate(tail):
                    if token.startswith("-") or (i and tail[i - 1] in ("-c", "--index-url")) or token in (".",):
                        continue
                    assert "==" in token or (constrained and token.startswith(".[")), f"unpinned pip install {token!r} in {cmd.strip()!r}"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_build_context_allowlist_admits_what_is_copied(path):
    rules = [r.strip() for r in (REPO / ".dockerignore").read_text().splitlines() if r.strip() and not r.startswith("#")]
    assert rules[0] == "*", ".dockerignore should start by ignoring everything (an allowlist)"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    for rest in args_of(path, "COPY"):
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        if any(w.startswith("--from") for w in shlex.split(rest)):
            continue
        for source in words[:-1]:
            assert any(fnmatch.fnmatch(source.rstrip("/"), pattern) for pattern in allowed), f"COPY {source}: not in the build context"
            assert (REPO / source).exists(), f"COPY {source}: no such file"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_torch_is_pinned_from_a_build_argument_index(path):
    """Every image pins torch; where it comes from is the TORCH_INDEX_URL build argument (CI points it at a
    loopback copy of the CPU wheel; the default is what users need)."""
    runs = " ".join(args_of(path, "RUN"))
    assert re.search(r'pip install --no-deps --index-url "\$\{TORCH_INDEX_URL\}" torch==2\.13\.0\b', runs), "torch==2.13.0 from TORCH_INDEX_URL"
    (arg,) = [a for a in args_of(path, "ARG") if a.startswith("TORCH_INDEX_URL=")]
    assert arg.split("=", 1)[1].startswith("https://")
    pins = (REPO / "requirements-pins.txt").read_text()
    assert not re.search(r"^torch==", pins, re.M) or "torch==2.13.0" in pins


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_placeholder_install_leaves_nothing_for_the_real_one(path):
    """The dependency layer installs against an empty package: its build/ and the placeholder must go in
    the same RUN, or the final `pip install .` packages the empty __init__.py (ImportError: __version__)."""
    for rest in args_of(path, "RUN"):
        if "touch services/synthtune/__init__.py" in rest:
            assert "rm -rf build services" in rest, rest
    copies = [rest for w, rest in instructions(path) if w == "COPY"]
    assert any(c.startswith("services ") for c in copies)


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_the_dependency_layer_is_keyed_on_the_dependency_files_alone(path):
    """A doc or source edit must not cost a dependency rebuild (minutes; the evaluator's is 10): before the
    dependency RUN only pyproject.toml and the pins are copied, README.md and services/ after it."""
    steps = instructions(path)
    deps = next(i for i, (w, rest) in enumerate(steps) if w == "RUN" and "touch services/synthtune/__init__.py" in rest)
    stage = max(i for i, (w, _) in enumerate(steps[:deps]) if w == "FROM")
    before = [rest.split()[:-1] for w, rest in steps[stage:deps] if w == "COPY"]
    assert before == [["pyproject.toml", "requirements-pins.txt"]], before
    after = " ".join(rest for w, rest in steps[deps:] if w == "COPY")
    assert "README.md" in after and "services" in after


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_default_store_and_caches_are_on_writable_mounts(path):
    """Under a read-only root only /tmp and /cache are writable: the default store and every cache live there."""
    steps = instructions(path)
    last_from = max(i for i, (w, _) in enumerate(steps) if w == "FROM")
    env = " ".join(rest for w, rest in steps[last_from:] if w == "ENV")
    found = dict(re.findall(r"(\w+)=(\S+)", env))
    assert found["SYNTHTUNE_STORE"].startswith("/cache/")
    for name, value in found.items():
        if name.endswith(("_CACHE", "_HOME", "_DIR", "_ROOT")) or name == "SYNTHTUNE_CACHE":
            assert value.startswith(("/cache", "/tmp")), f"{name}={value}: not on /cache or /tmp"
