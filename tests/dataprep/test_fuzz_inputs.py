"""Fuzzing (hypothesis, bounded): the spec loader and every reader either read their input or raise a
bad-input error that names the file; nothing else escapes. About 20 s on 2 cores."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synthtune.dataprep.readers import SUPPORTED, read_sources
from synthtune.dataprep.rejects import Rejects
from synthtune.errors import InvalidInput
from synthtune.progress import Progress
from synthtune.spec import PipelineSpec, load_spec_text

BOUNDED = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
MINIMAL = "version: 1\nname: fuzz\nsource: {paths: [a.csv]}\n"

yaml_atoms = st.sampled_from(["version", "name", "source", "paths", "generate", "methods", "label", "teacher", "&a", "*a", "<<",
                              ":", "- ", "[", "]", "{", "}", ",", "\n", "  ", "'", '"', "#", "!!python/object", "1e999", "~", "\t"])


@BOUNDED
@given(st.one_of(st.text(max_size=300), st.lists(yaml_atoms, max_size=60).map("".join),
                 st.text(max_size=120).map(lambda tail: MINIMAL + tail)))
def test_spec_loader_raises_only_bad_input_naming_the_file(text: str) -> None:
    try:
        spec = load_spec_text(text, "fuzz.yaml")
    except InvalidInput as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
    else:
        assert isinstance(spec, PipelineSpec)


SEEDS = {
    ".csv": b"Problem,Machine,Action\nleak,EX1,fixed\n",
    ".tsv": b"Problem\tMachine\tAction\nleak\tEX1\tfixed\n",
    ".jsonl": b'{"Problem": "leak", "Machine": "EX1", "Action": "fixed"}\n',
    ".json": b'[{"Problem": "leak", "Machine": "EX1", "Action": "fixed"}]',
    ".norm": b"leak\tleak\n\nfixed\tfixed\n",
    ".txt": b"The boom cylinder leaks oil.\n",
    ".md": b"# Boom\nThe boom cylinder leaks oil.\n",
    ".markdown": b"# Boom\n",
    ".pdf": b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF",
    ".xlsx": b"PK\x03\x04",
    ".xlsm": b"PK\x03\x04",
    ".parquet": b"PAR1\x00\x00PAR1",
}
SEEDS.update({".tab": SEEDS[".tsv"], ".ndjson": SEEDS[".jsonl"], ".pq": SEEDS[".parquet"]})


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    cut = st.integers(0, len(seed))
    return st.one_of(
        st.binary(max_size=400),
        st.tuples(cut, st.binary(max_size=40)).map(lambda t: seed[: t[0]] + t[1] + seed[t[0]:]),
        cut.map(lambda n: seed[:n]),
    )


@pytest.mark.parametrize("suffix", sorted(SUPPORTED))
def test_every_reader_raises_only_bad_input_naming_the_file(suffix: str) -> None:
    assert suffix in SEEDS, f"add a seed for {suffix}"

    @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(_mutations(SEEDS[suffix]))
    def check(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as folder:
            name = f"input{suffix}"
            (Path(folder) / name).write_bytes(data)
            spec = PipelineSpec.model_validate({"version": 1, "name": "fuzz", "base_dir": folder, "source": {
                "paths": [name], "fields": {"problem": "Problem", "machine": "Machine", "solution": "Action"}}})
            rejects = Rejects()
            try:
                result = read_sources(spec.source, spec.prepare, spec.base_dir, rejects, Progress("fuzz"))
            except InvalidInput as exc:
                assert name in str(exc), str(exc)
                return
            for row in rejects.rows:
                assert row.get("id") and row.get("reason"), row
            assert all(r["id"] for r in result.records)

    check()
