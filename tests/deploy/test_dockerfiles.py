"""Dockerfiles: hadolint clean, non-root, pinned bases, health checks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(REPO.glob("Dockerfile.*"))


def test_three_images():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.evaluator", "Dockerfile.generator", "Dockerfile.trainer"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_hadolint_is_clean(path):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_non_root_pinned_with_healthcheck(path):
    text = path.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(":" in f and not f.endswith(":latest") for f in froms)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK\s", text, re.M)
    assert not re.search(r"(?i)(api_key|secret|password)\s*=", text)
    assert len(froms) >= 2 or "AS base" in text  # multi-stage (the evaluator extends vLLM's image)
