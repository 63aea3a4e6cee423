"""Protos pass buf lint (STANDARD) and the committed stubs match a fresh generation."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_buf_lint_standard_is_clean():
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    out = subprocess.run([buf, "lint"], cwd=REPO / "protos", capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_committed_stubs_are_current(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_protos.py"), "--out", str(tmp_path / "gen")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    committed = REPO / "services" / "synthtune" / "rpc" / "gen"
    fresh = sorted(p.relative_to(tmp_path / "gen") for p in (tmp_path / "gen").rglob("*") if p.is_file())
    stored = sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert fresh == stored, "stub files differ: run `make stubs`"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / "gen" / p, committed / p, shallow=False)]
    assert not stale, f"stale stubs {stale}: run `make stubs`"
