"""The pipeline spec: defaults, thesis training values, errors with line:column, schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthtune.errors import InvalidInput
from synthtune.spec import PipelineSpec, json_schema, json_schema_text, load_spec, load_spec_text

REPO = Path(__file__).resolve().parents[2]
MINIMAL = """\
version: 1
name: excavator
source:
  paths: [work_orders.csv]
  fields: {problem: OriginalShorttext, machine: Asset, solution: Action}
"""


def _problems(text: str) -> list[str]:
    with pytest.raises(InvalidInput) as exc:
        load_spec_text(text, "p.yaml")
    return exc.value.problems


def test_minimal_spec_gets_every_default():
    spec = load_spec_text(MINIMAL, "p.yaml")
    assert spec.prepare.split.train == 0.8 and spec.prepare.split.seed == 42
    assert [m.name for m in spec.generate.methods] == ["record_qa"]
    assert spec.generate.teacher.backend == "transformers"
    assert spec.train.base_model == "smollm2-135m-instruct"
    assert spec.evaluate.metrics == ["rouge", "bleu", "meteor"]


def test_training_defaults_follow_the_thesis():
    t = load_spec_text(MINIMAL).train
    assert (t.lora.r, t.lora.alpha, t.lora.dropout) == (16, 8, 0.1)
    assert t.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"]
    q = t.quantization
    assert (q.bits, q.quant_type, q.double_quant, q.compute_dtype) == (4, "nf4", True, "bfloat16")
    assert t.optimizer == "paged_adamw_32bit" and t.scheduler == "cosine" and t.warmup_steps == 300
    assert (t.epochs, t.learning_rate, t.batch_size) == (7, 3e-5, 18)


def test_design_example_is_valid():
    text = MINIMAL + """\
prepare:
  split: {train: 0.8, validation: 0.1, test: 0.1, seed: 42}
  dedup: {exact: true, near: false}
generate:
  teacher: {backend: transformers}
  methods: [{name: record_qa}]
  limit: 20
train:
  base_model: smollm2-135m-instruct
  method: lora
  lora: {r: 16, alpha: 8, dropout: 0.1}
  max_steps: 5
evaluate:
  metrics: [rouge, bleu, meteor]
  limit: 10
"""
    spec = load_spec_text(text)
    assert spec.train.method == "lora" and spec.generate.limit == 20 and spec.prepare.dedup.near is False


def test_future_version_is_refused_with_a_clear_message():
    problems = _problems(MINIMAL.replace("version: 1", "version: 2"))
    assert len(problems) == 1
    assert problems[0].startswith("p.yaml:1:1: version:") and "upgrade synthtune" in problems[0]


def test_every_problem_is_listed_with_line_and_column():
    text = """\
version: 1
name: x
source:
  paths: [a.csv]
  feilds: {problem: A}
train:
  lora: {r: abc}
  max_steps: -3
prepare:
  split: {train: 0.5, validation: 0.1, test: 0.1}
"""
    problems = _problems(text)
    joined = "\n".join(problems)
    assert "p.yaml:5:3: source.feilds: unknown key" in joined
    assert "p.yaml:7:10: train.lora.r:" in joined
    assert "p.yaml:8:3: train.max_steps:" in joined
    assert "p.yaml:10:3: prepare.split:" in joined and "sum to 1" in joined
    assert len(problems) == 4


def test_missing_required_fields_are_named():
    problems = _problems("version: 1\nname: x\n")
    assert problems == ["p.yaml:1:1: source: required key is missing"]


def test_yaml_syntax_error_names_line():
    with pytest.raises(InvalidInput, match=r"p.yaml:4:1: not valid YAML: .*flow sequence at 3:9"):
        load_spec_text("version: 1\nname: x\nsource: [unclosed\n", "p.yaml")


def test_non_mapping_and_missing_file(tmp_path):
    with pytest.raises(InvalidInput, match="must be a YAML mapping"):
        load_spec_text("- a\n- b\n", "p.yaml")
    with pytest.raises(InvalidInput, match="no such pipeline file"):
        load_spec(tmp_path / "nope.yaml")


def test_load_spec_sets_base_dir(tmp_path):
    f = tmp_path / "pipeline.yaml"
    f.write_text(MINIMAL)
    assert load_spec(f).base_dir == str(tmp_path.resolve())


def test_every_field_has_help_text():
    def walk(schema: dict, defs: dict, path: str) -> list[str]:
        missing = []
        for name, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{path}.{name}")
        return missing

    schema = json_schema()
    defs = schema.get("$defs", {})
    missing = walk(schema, defs, "pipeline")
    for name, sub in defs.items():
        missing += walk(sub, defs, name)
    assert missing == []


def test_committed_schema_is_current():
    committed = (REPO / "schemas" / "pipeline.schema.json").read_text()
    assert committed == json_schema_text(), "schemas/pipeline.schema.json is stale: run `make schema`"


def test_every_shipped_example_validates():
    files = sorted((REPO / "examples").rglob("*.yaml"))
    assert files, "no examples shipped"
    for f in files:
        assert isinstance(load_spec(f), PipelineSpec), f
