"""report.json carries the contract keys; report.html shows the same numbers and opens cleanly in Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from synthtune.evaluator.report import write_report
from synthtune.spec import load_spec_text

SPEC = """\
version: 1
name: plant
source: {paths: [a.csv]}
generate: {methods: [{name: record_qa}, {name: persona}]}
"""


def _art(store, kind, parents, files, stats=None):
    with store.create(kind, parents, {"files": sorted(files)}, "test") as w:
        for name, content in files.items():
            if isinstance(content, bytes):
                w.path(name).write_bytes(content)
            elif name.endswith(".jsonl"):
                w.write_jsonl(name, content)
            else:
                w.write_json(name, content)
        w.stats.update(stats or {})
        return w.commit()


@pytest.fixture
def run(file_store):
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.hist([1, 2, 2, 3])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    prepared = _art(file_store, "prepared", [], {"stats.json": {"splits": {"train": 50, "validation": 6, "test": 6}, "input": 64, "rejected": 2},
                                                 "length_histogram.png": buf.getvalue()})
    stages = {"prepare": {"state": "succeeded", "artifact": prepared.to_dict()}}
    models = {"base": {"rouge1": 0.1, "rouge2": 0.01, "rougeL": 0.09, "bleu": 0.02, "meteor": 0.05, "semantic": 0.4, "loop_rate": 0.5}}
    for i, m in enumerate(["record_qa", "persona"]):
        syn = _art(file_store, "synthetic", [prepared.id], {"stats.json": {}}, {"records": 10 + i, "rejected": 2 - i})
        ada = _art(file_store, "adapter", [syn.id], {"training_log.json": {"train_loss": [2.0, 1.5, 1.2], "train_steps": [1, 2, 3], "eval_loss": [1.4],
                                                                             "eval_steps": [3], "runtime_s": 12.5, "tokens_per_s": 80.0}})
        stages[f"generate:{m}"] = {"state": "succeeded", "artifact": syn.to_dict()}
        stages[f"train:{m}"] = {"state": "succeeded", "artifact": ada.to_dict()}
        models[f"tuned:{m}"] = {"rouge1": 0.3 + i / 10, "rouge2": 0.1, "rougeL": 0.25 + i / 10, "bleu": 0.12, "meteor": 0.2, "semantic": 0.6, "loop_rate": 0.0}
    metrics = {"primary_temperature": 0.0, "models": models, "verdict": "persona won: ROUGE-L 0.350 vs base 0.090 (+0.260).",
               "leaderboard": [{"model": "tuned:persona", "method": "persona", "metric": "rougeL", "score": 0.35, "delta": 0.26, "ci95": [0.1, 0.4]}],
               "judge": {"tuned:persona": {"wins": 4, "losses": 1, "ties": 1, "invalid": 0, "win_rate": 0.75}}, "forgetting": {"base": 0.5}}
    preds = [{"id": "t:1", "model": n, "temperature": 0.0, "sample": 0, "prompt": "Head 7 underfills?", "reference": "Fix: valve seat <b>",
              "prediction": f"answer from {n}"} for n in models]
    ev = _art(file_store, "evaluation", [prepared.id], {"metrics.json": metrics, "predictions.jsonl": preds})
    stages["evaluate"] = {"state": "succeeded", "artifact": ev.to_dict()}
    return {"run_id": "plant-1", "name": "plant", "status": "succeeded", "stages": stages}


def test_report_json_has_the_contract_keys(file_store, run):
    json_key, html_key = write_report(file_store, run, load_spec_text(SPEC))
    report = file_store.get_json(json_key)
    assert report["run_id"] == "plant-1" and report["status"] == "succeeded"
    assert report["datasets"]["prepared"]["train"] == 50 and report["datasets"]["prepared"]["test"] == 6
    assert report["datasets"]["synthetic"]["persona"] == {"records": 11, "rejected": 1}
    assert [m["name"] for m in report["models"]] == ["base", "tuned:record_qa", "tuned:persona"]
    assert report["models"][0]["method"] is None and report["models"][2]["method"] == "persona"
    assert set(report["metrics"]["tuned:persona"]) >= {"rouge1", "rouge2", "rougeL", "bleu", "meteor"}
    assert report["judge"]["tuned:persona"]["win_rate"] == 0.75
    assert report["training"]["record_qa"]["train_loss"] == [2.0, 1.5, 1.2] and report["training"]["record_qa"]["tokens_per_s"] == 80.0


def test_html_numbers_are_the_json_numbers(file_store, run):
    json_key, html_key = write_report(file_store, run, load_spec_text(SPEC))
    report, html = file_store.get_json(json_key), file_store.get_text(html_key)
    for name, values in report["metrics"].items():
        for key in ("rouge1", "rougeL", "bleu", "meteor"):
            assert f"{values[key]:.4f}" in html, (name, key)
    assert report["verdict"] in html
    assert "&lt;b&gt;" in html and "<b>" not in html  # record text is escaped
    assert "http://" not in html and "https://" not in html  # self-contained


@pytest.mark.integration
def test_report_opens_in_headless_chromium_without_console_errors(file_store, run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: run scripts/install_system_deps.sh (make test does)")
    _, html_key = write_report(file_store, run, load_spec_text(SPEC))
    page = Path(file_store.backend.root) / html_key
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    out = subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000, out.stderr[-2000:]
    console = [line for line in out.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("data:image/png;base64,") >= 3  # metric bars, loss curves, length histogram
    assert "id=\"verdict\"" in dom
