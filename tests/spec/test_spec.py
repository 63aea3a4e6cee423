"""The pipeline spec: defaults, thesis training values, errors with line:column, schema."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from synthtune.errors import InvalidInput
from synthtune.spec import (
    EvaluateSpec,
    GenerateSpec,
    PipelineSpec,
    PrepareSpec,
    SourceSpec,
    TrainSpec,
    json_schema,
    json_schema_text,
    load_spec,
    load_spec_text,
)

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


def test_every_section_but_source_has_defaults():
    spec = load_spec_text(MINIMAL, "p.yaml")
    assert spec.prepare == PrepareSpec() and spec.generate == GenerateSpec()
    assert spec.train == TrainSpec() and spec.evaluate == EvaluateSpec()
    with pytest.raises(ValueError, match="paths"):
        SourceSpec()  # type: ignore[call-arg]
    assert spec.source.kind == "auto" and spec.source.fields["problem"] == "OriginalShorttext"


def test_section_defaults_are_the_documented_ones():
    p = PrepareSpec()
    assert p.required == ["problem", "solution"] and p.dedup.exact is True and p.dedup.near is False
    assert (p.split.train, p.split.validation, p.split.test, p.split.seed) == (0.8, 0.1, 0.1, 42)
    assert p.translate is None and p.normalize_case is True
    g = GenerateSpec()
    assert (g.teacher.backend, g.teacher.model) == ("transformers", "smollm2-135m-instruct")
    assert g.teacher.api_key_env is None and [m.key for m in g.methods] == ["record_qa"]
    assert g.filters.decontaminate is True and g.filters.judge is False and g.limit is None
    e = EvaluateSpec()
    assert e.backend == "transformers" and e.metrics == ["rouge", "bleu", "meteor"]
    assert e.temperatures == [0.0] and e.judge.enabled is False and e.limit is None
    t = TrainSpec()
    assert t.base_model == "smollm2-135m-instruct" and t.method is None  # qlora on GPU, lora on CPU, at run time
    assert t.max_steps is None and t.scaling.workers == 1


def test_training_defaults_follow_the_thesis():
    t = load_spec_text(MINIMAL).train
    assert (t.lora.r, t.lora.alpha, t.lora.dropout) == (16, 8, 0.1)
    # The thesis also adapts lm_head; TRL's SFTTrainer cannot train an adapter there (fused LM head), see docs/train.md.
    assert t.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    q = t.quantization
    assert (q.bits, q.quant_type, q.double_quant, q.compute_dtype) == (4, "nf4", True, "bfloat16")
    assert t.optimizer == "paged_adamw_32bit" and t.scheduler == "cosine" and t.warmup_steps > 0
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


def test_future_version_is_listed_first_among_all_problems():
    problems = _problems("version: 3\nname: x\nnew_section: {a: 1}\n")
    assert problems == [
        "p.yaml:1:1: version: this pipeline is spec version 3, but this synthtune reads version 1; upgrade synthtune (got 3)",
        "p.yaml:1:1: source: required key is missing",
        "p.yaml:3:1: new_section: unknown key (check its spelling and indentation)",
    ]


@pytest.mark.parametrize(("version", "message"), [("0", "version must be 1"), ("1.5", "valid integer"), ("x", "valid integer")])
def test_bad_versions(version, message):
    problems = _problems(MINIMAL.replace("version: 1", f"version: {version}"))
    assert len(problems) == 1 and problems[0].startswith("p.yaml:1:1: version:") and message in problems[0]


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
    assert _problems("source: {paths: [a]}\n") == [
        "p.yaml:1:1: version: required key is missing",
        "p.yaml:1:1: name: required key is missing",
    ]


def test_wrong_types_in_lists_and_unions_name_the_item_and_value():
    text = MINIMAL + """\
generate:
  methods:
    - name: record_qa
    - {name: bogus}
    - label: no-name
  filters: {dedup_near: abc}
  teacher: {backend: openai, temperature: hot}
evaluate:
  temperatures: [0, x]
  judge: {enabled: maybe}
extra_top: 1
"""
    problems = _problems(text)
    assert problems == [
        "p.yaml:9:8: generate.methods.1.name: Input should be 'record_qa', 'document_qa', 'event_scenario', 'evol' or 'persona' (got 'bogus')",
        "p.yaml:10:7: generate.methods.2.name: required key is missing",
        "p.yaml:11:13: generate.filters.dedup_near: expected a valid number or False (got 'abc')",
        "p.yaml:12:30: generate.teacher.temperature: Input should be a valid number, unable to parse string as a number (got 'hot')",
        "p.yaml:14:21: evaluate.temperatures.1: Input should be a valid number, unable to parse string as a number (got 'x')",
        "p.yaml:15:11: evaluate.judge.enabled: Input should be a valid boolean, unable to interpret input (got 'maybe')",
        "p.yaml:16:1: extra_top: unknown key (check its spelling and indentation)",
    ]


def test_duplicate_keys_name_both_lines():
    with pytest.raises(InvalidInput, match=r"p.yaml:3:1: not valid YAML: found duplicate key \"name\""):
        load_spec_text("version: 1\nname: x\nname: y\nsource: {paths: [a]}\n", "p.yaml")


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
    # A field was added, changed or documented anew without regenerating the schema.
    assert committed == json_schema_text(), "schemas/pipeline.schema.json is stale: run `make schema` and commit it"


def test_schema_accepts_the_example_and_refuses_typos():
    jsonschema = pytest.importorskip("jsonschema")
    from ruamel.yaml import YAML

    schema = json_schema()
    assert schema["$schema"].endswith("2020-12/schema") and schema["title"] == "synthtune pipeline (version 1)"
    validator = jsonschema.Draft202012Validator(schema)
    example = YAML(typ="safe").load((REPO / "examples" / "quickstart" / "pipeline.yaml").read_text())
    assert list(validator.iter_errors(example)) == []
    example["train"]["lorra"] = {"r": 8}
    example["generate"]["teacher"]["backend"] = "nope"
    messages = sorted(e.message for e in validator.iter_errors(example))
    assert len(messages) == 2 and any("lorra" in m for m in messages) and any("'nope'" in m for m in messages)


def test_gen_schema_check_mode(tmp_path):
    import subprocess
    import sys

    env = {"PYTHONPATH": str(REPO / "services"), "PATH": "/usr/bin:/bin"}
    script = str(REPO / "scripts" / "gen_schema.py")
    ok = subprocess.run([sys.executable, script, "--check"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    stale = tmp_path / "stale.json"
    stale.write_text("{}\n")
    bad = subprocess.run([sys.executable, script, "--check", "--output", str(stale)], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "make schema" in bad.stderr
    subprocess.run([sys.executable, script, "--output", str(stale)], env=env, check=True, capture_output=True)
    assert stale.read_text() == json_schema_text()


def test_every_shipped_example_validates():
    files = sorted((REPO / "examples").rglob("*.yaml"))
    assert files, "no examples shipped"
    for f in files:
        assert isinstance(load_spec(f), PipelineSpec), f


@pytest.mark.parametrize("label", ["x onfocus=alert(6) autofocus tabindex=1", "$\\foo$", "<b>m</b>", "a\"b", "", "-lead", "x" * 65])
def test_method_labels_cannot_carry_markup_or_mathtext(label):
    text = MINIMAL + f"generate:\n  methods:\n    - {{name: record_qa, label: {json.dumps(label)}}}\n"
    [problem] = _problems(text)
    assert "generate.methods.0.label: String should match pattern" in problem


def test_plain_method_labels_still_pass():
    spec = load_spec_text(MINIMAL + "generate:\n  methods:\n    - {name: record_qa, label: fmea_v2.1-a}\n", "p.yaml")
    assert spec.generate.methods[0].key == "fmea_v2.1-a"


@pytest.mark.parametrize("section", ["generate:\n  teacher", "evaluate:\n  judge", "evaluate"])
@pytest.mark.parametrize("name", ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "SYNTHTUNE_AUTH_TOKEN", "lower_case", "A-B"])
def test_api_key_env_cannot_name_store_or_service_secrets(section, name):
    body = f"{section}: {{api_key_env: {name}}}\n" if section == "evaluate" else f"{section}: {{backend: openai, api_key_env: {name}}}\n"
    [problem] = _problems(MINIMAL + body)
    assert "api_key_env" in problem and ("may not name AWS_*" in problem or "capitals" in problem)


def test_yaml_alias_bomb_is_refused_fast_and_small():
    lines = ["version: 1", "name: x", "source: {paths: [a]}", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]  # 110 aliases, 10**12 values once expanded
    text = "\n".join(lines) + "\n"
    assert len(text) < 1000
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"p.yaml:\d+: more than 100 YAML aliases"):
        load_spec_text(text, "p.yaml")
    assert time.monotonic() - started < 1.0


def test_few_aliases_that_expand_hugely_are_refused_by_the_node_bound():
    # 95 aliases, within the alias bound, expanding to 60 x 50 x 45 = 135,000 values
    lines = ["version: 1", "name: x", "source: {paths: [a]}", "a0: &a0 [" + ", ".join(["x"] * 60) + "]",
             "a1: &a1 [" + ", ".join(["*a0"] * 50) + "]", "a2: &a2 [" + ", ".join(["*a1"] * 45) + "]"]
    text = "\n".join(lines) + "\n"
    started = time.monotonic()
    with pytest.raises(InvalidInput, match=r"p.yaml: the spec expands to more than 100,000 values"):
        load_spec_text(text, "p.yaml")
    assert time.monotonic() - started < 2.0


def test_oversized_spec_is_refused_before_parsing():
    with pytest.raises(InvalidInput, match=r"p.yaml: a pipeline file is at most 1024 KiB"):
        load_spec_text(MINIMAL + "#" * (1024 * 1024 + 1) + "\n", "p.yaml")
