"""Wheels ship every data file: each non-Python file in the package is matched by a package-data glob.

Builds nothing: it applies the globs of pyproject's [tool.setuptools.package-data] the way setuptools
does (glob relative to the package folder, ``**`` recursive) and checks what they match.
"""

from __future__ import annotations

import glob
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "services" / "synthtune"


def _matched() -> set[str]:
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["synthtune"]
    return {Path(hit).as_posix() for pattern in patterns for hit in glob.glob(pattern, root_dir=PACKAGE, recursive=True)}


def _data_files() -> list[str]:
    return sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)


def test_every_file_under_a_data_folder_ships():
    data = [f for f in _data_files() if "data" in Path(f).parts[:-1]]
    assert "evaluator/data/forgetting_probe.jsonl" in data  # the forgetting probe, which wheels used to lose
    missing = [f for f in data if f not in _matched()]
    assert missing == [], f"not matched by any [tool.setuptools.package-data] glob: {missing}"


def test_every_other_non_python_file_ships_too():
    missing = [f for f in _data_files() if f not in _matched()]
    assert missing == [], f"not matched by any [tool.setuptools.package-data] glob: {missing}"
