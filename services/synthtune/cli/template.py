"""The commented pipeline.yaml that `synthtune init` writes."""

from __future__ import annotations


def pipeline_template(path: str, fields: dict[str, str]) -> str:
    from synthtune.dataprep import source_yaml

    source = source_yaml([path], fields or {"problem": "Title", "machine": "Machine", "solution": "WorkPerformed"})
    return f"""# synthtune pipeline (spec version 1). Check it with: synthtune validate THIS_FILE
version: 1
name: my-plant
# source.paths: files or globs, relative to this file: CSV/TSV, XLSX, JSONL, JSON, Parquet, PDF, Markdown, event logs.
# source.fields: record field -> column. Known fields: problem, machine, cause, solution, hours; others travel along.
# `synthtune prepare --suggest-fields FILE` proposes a mapping.
{source.rstrip()}
prepare:
  required: [problem, solution]        # records missing these are rejected (see rejects.jsonl)
  dedup: {{exact: true, near: 0.9}}      # near: MinHash Jaccard threshold, or false
  split: {{train: 0.8, validation: 0.1, test: 0.1, seed: 42}}
generate:
  # The embedded CPU model; for real data use a stronger teacher, e.g.
  # teacher: {{backend: openai, model: gpt-4o, api_key_env: OPENAI_API_KEY}}
  teacher: {{backend: transformers}}
  methods: [{{name: record_qa}}, {{name: persona}}]
  limit: 50                            # records per method; remove for a full run
train:
  base_model: smollm2-135m-instruct    # or an HF model folder, or a .gguf file
  # method: qlora                      # default on GPU; lora on CPU
  max_steps: 30                        # remove to train `epochs` (7, as in the reference thesis)
evaluate:
  metrics: [rouge, bleu, meteor, semantic]
  limit: 20
"""
