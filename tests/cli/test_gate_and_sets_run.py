"""A whole run on the shared excavator work orders: `direct` and `record_qa`, a hand-written XLSX exam, a gate that cannot pass."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # three models trained and evaluated through the CLI on CPU
def test_a_failed_gate_exits_3_with_the_report_and_every_models_set_metrics(tmp_path, shared_datasets):
    import openpyxl

    with open(shared_datasets / "excavator_work_orders_labelled.csv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["Action"]]
    records, exam = rows[:60], rows[200:203]  # the exam is hand-written from orders the pipeline never reads
    with open(tmp_path / "orders.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(records)
    book = openpyxl.Workbook()
    book.active.append(["Question", "Answer"])
    for r in exam:
        book.active.append([f"The {r['OriginalShorttext'].lower()} on excavator {r['Asset']}: what do I do?", f"Fix: {r['Action']}."])
    book.save(tmp_path / "exam.xlsx")
    (tmp_path / "p.yaml").write_text("""\
version: 1
name: gate
source:
  paths: [orders.csv]
  fields: {problem: OriginalShorttext, machine: Asset, solution: Action}
prepare: {split: {train: 0.8, validation: 0.1, test: 0.1, seed: 42}}
generate:
  teacher: {backend: transformers, max_tokens: 64, concurrency: 4}
  methods: [{name: direct}, {name: record_qa}]
  limit: 3
  filters: {min_chars: 1, grounding: false, dedup_near: false, keep_truncated: true}
train: {method: lora, max_steps: 2, batch_size: 2, max_seq_len: 128, warmup_steps: 0, learning_rate: 0.001}
evaluate:
  metrics: [rouge, bleu]
  limit: 2
  max_new_tokens: 8
  forgetting_probe: false
  bootstrap: 50
  sets: [{name: exam, path: exam.xlsx, fields: {question: Question, reference: Answer}}]
  gate: {metric: rougeL, set: exam, min_gain: 1.0}
""")
    env = dict(os.environ, PYTHONPATH=str(REPO / "services"), SYNTHTUNE_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "synthtune.cli.main", "run", str(tmp_path / "p.yaml"), "--store", str(tmp_path / "store")],
                         capture_output=True, text=True, env=env, timeout=1500)
    assert out.returncode == 3, out.stderr[-3000:]
    assert "gate failed: the promotion gate failed" in out.stderr and "needs gain >= 1" in out.stderr
    run_id = out.stdout.strip().splitlines()[-1].split()[0].split("=", 1)[1]  # the result line still comes last
    run_dir = tmp_path / "store" / "runs" / run_id
    report = json.loads((run_dir / "report.json").read_text())
    models = {"base", "tuned:direct", "tuned:record_qa"}
    assert report["sets"]["exam"]["n"] == 3 and set(report["sets"]["exam"]["metrics"]) == models
    for name in models:
        assert 0.0 <= report["sets"]["exam"]["metrics"][name]["rougeL"] <= 1.0 and set(report["metrics"][name]) >= {"rougeL", "bleu"}
    gate = report["gate"]
    assert gate["passed"] is False and gate["set"] == "exam" and gate["min_gain"] == 1.0 and gate["model"] in models
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "succeeded" and record["gate"]["passed"] is False
    assert [e["message"] for e in record["events"] if e["type"] == "gate_failed"] == [gate["reason"]]
    html = (run_dir / "report.html").read_text()
    assert "Evaluation set: exam" in html and "Promotion gate FAILED" in html
