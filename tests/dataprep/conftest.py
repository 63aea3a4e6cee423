from __future__ import annotations

from pathlib import Path

import pytest

from synthtune.progress import Progress
from synthtune.spec import load_spec_text


@pytest.fixture
def prepare(tmp_path, file_store):
    """Run the prepare stage on a spec snippet; returns (artifact, stats)."""
    import synthtune.dataprep as dp

    def _run(source_yaml: str, extra: str = "", base: Path | None = None):
        text = f"version: 1\nname: t\nsource:\n{source_yaml}\n{extra}"
        spec = load_spec_text(text, "p.yaml", base_dir=str(base or tmp_path))
        ref = dp.run(spec, {}, file_store, Progress("prepare"))
        art = file_store.open(ref)
        return art, art.read_json("stats.json")

    return _run
