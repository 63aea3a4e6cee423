"""report.json carries the contract keys; report.html shows the same numbers and opens cleanly in Chromium.

The Chromium test keeps its screenshot in its tmp_path. The README's picture (docs/report.png) is
the demo's own report: `make demo && python scripts/screenshot_report.py` (same browser flags).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from synthtune.controller.runs import RunRecord
from synthtune.evaluator.report import embed_json, write_report
from synthtune.spec import load_spec_text
from synthtune.spec.graph import ReportInput

REPO = Path(__file__).resolve().parents[2]
SPEC = """\
version: 1
name: plant
source: {paths: [a.csv]}
generate: {methods: [{name: record_qa}, {name: persona}]}
"""


def _art(store, kind, parents, files, stats=None, tag=""):
    with store.create(kind, parents, {"files": sorted(files), "tag": tag}, "test") as w:
        for name, content in files.items():
            if isinstance(content, bytes):
                w.path(name).write_bytes(content)
            elif name.endswith(".jsonl"):
                w.write_jsonl(name, content)
            else:
                w.write_json(name, content)
        w.stats.update(stats or {})
        return w.commit()


def _health(loop: float) -> dict[str, float]:
    return {"empty_rate": 0.0, "truncated_rate": 0.25, "loop_rate": loop, "refusal_rate": 0.0}


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
    models = {"base": {"rouge1": 0.1, "rouge2": 0.01, "rougeL": 0.09, "bleu": 0.02, "meteor": 0.05, "semantic": 0.4, **_health(0.5),
                       "function_call_rate": 0.5, "function_name_accuracy": 0.25, "function_args_accuracy": 0.25, "function_calls": 4, "n": 6}}
    for i, m in enumerate(["record_qa", "persona"]):
        syn = _art(file_store, "synthetic", [prepared.id], {"stats.json": {}}, {"records": 10 + i, "rejected": 2 - i}, tag=m)
        ada = _art(file_store, "adapter", [syn.id], {"training_log.json": {"train_loss": [2.0, 1.5, 1.2], "train_steps": [1, 2, 3], "eval_loss": [1.4],
                                                                             "eval_steps": [3], "runtime_s": 12.5, "tokens_per_s": 80.0}})
        stages[f"generate:{m}"] = {"state": "succeeded", "artifact": syn.to_dict()}
        stages[f"train:{m}"] = {"state": "succeeded", "artifact": ada.to_dict()}
        models[f"tuned:{m}"] = {"rouge1": 0.3 + i / 10, "rouge2": 0.1, "rougeL": 0.25 + i / 10, "bleu": 0.12, "meteor": 0.2, "semantic": 0.6,
                                **_health(0.0), "function_call_rate": 1.0, "function_name_accuracy": 0.75 + i / 8,
                                "function_args_accuracy": 0.75, "function_calls": 4, "n": 6}
    hot = {n: {**v, "rouge1": v["rouge1"] * 0.9, "loop_rate": 0.125, "n": 18} for n, v in models.items()}
    metrics = {"primary_temperature": 0.0, "models": models, "by_temperature": {"0": models, "0.7": hot},
               "verdict": "persona won: ROUGE-L 0.350 vs base 0.090 (+0.260).",
               "leaderboard": [{"model": "tuned:persona", "method": "persona", "metric": "rougeL", "score": 0.35, "base_score": 0.09, "delta": 0.26,
                                "ci95": [0.1, 0.4]},
                               {"model": "tuned:record_qa", "method": "record_qa", "metric": "rougeL", "score": 0.25, "base_score": 0.09, "delta": 0.16,
                                "ci95": [-0.02, 0.3]}],
               "judge": {"tuned:persona": {"wins": 4, "losses": 1, "ties": 1, "invalid": 2, "win_rate": 0.75}},
               "judge_scores": {"base": {"mean": 3.5, "n": 5, "invalid": 1}, "tuned:persona": {"mean": 7.25, "n": 6, "invalid": 0}},
               "forgetting": {"base": 0.5, "tuned:persona": 0.4375}, "skipped_empty_reference": 3, "skipped": {"empty_reference": 3, "reference_in_prompt": 2},
               "test_records": 10, "reference_records": 6, "function_call_records": 4}
    preds = [{"id": "t:1", "model": n, "temperature": 0.0, "sample": 0, "prompt": "Head 7 underfills?",
              "reference": "Fix: valve seat <b> </script><!-- then", "prediction": f"answer from {n}"} for n in models]
    ev = _art(file_store, "evaluation", [prepared.id], {"metrics.json": metrics, "predictions.jsonl": preds})
    stages["evaluate"] = {"state": "succeeded", "artifact": ev.to_dict()}
    return {"run_id": "plant-1", "name": "plant", "status": "succeeded", "stages": stages}


def as_input(run: dict) -> ReportInput:  # type: ignore[type-arg]
    """What the controller hands the report for a run record like ``run``."""
    return RunRecord.model_validate({"spec_yaml": "", **run}).report_input()


class Page(HTMLParser):
    """Every numeric cell (data-path, data-value, text), every table id, and the embedded JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, Any]] = []
        self.tables: list[str] = []
        self.json_text = ""
        self._cell: dict[str, Any] | None = None
        self._in_json = False

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        if tag == "td" and "num" in (a.get("class") or "").split():
            self._cell = {"path": a.get("data-path"), "value": a.get("data-value"), "text": ""}
        elif tag == "table" and a.get("id"):
            self.tables.append(a["id"])
        elif tag == "script" and a.get("id") == "report-data":
            self._in_json = True

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
        elif tag == "script":
            self._in_json = False

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_json:
            self.json_text += data


def _at(report: Any, path: list[str]) -> Any:
    node = report
    for key in path:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def test_report_json_has_the_contract_keys(file_store, run):
    json_key, html_key = write_report(file_store, as_input(run), load_spec_text(SPEC))
    report = file_store.get_json(json_key)
    assert report["run_id"] == "plant-1" and report["status"] == "succeeded"
    assert report["datasets"]["prepared"]["train"] == 50 and report["datasets"]["prepared"]["test"] == 6
    assert report["datasets"]["synthetic"]["persona"] == {"records": 11, "rejected": 1}
    assert [m["name"] for m in report["models"]] == ["base", "tuned:record_qa", "tuned:persona"]
    assert report["models"][0]["method"] is None and report["models"][2]["method"] == "persona"
    assert set(report["metrics"]["tuned:persona"]) >= {"rouge1", "rouge2", "rougeL", "bleu", "meteor"}
    assert report["judge"]["tuned:persona"]["win_rate"] == 0.75
    assert report["training"]["record_qa"]["train_loss"] == [2.0, 1.5, 1.2] and report["training"]["record_qa"]["tokens_per_s"] == 80.0
    # extensions
    assert report["skipped_empty_reference"] == 3 and report["evaluation_set"]["skipped"] == {"empty_reference": 3, "reference_in_prompt": 2}
    assert report["judge_scores"]["tuned:persona"] == {"mean": 7.25, "n": 6, "invalid": 0}
    assert report["metrics"]["base"]["function_name_accuracy"] == 0.25 and report["metrics"]["base"]["loop_rate"] == 0.5
    assert set(report["by_temperature"]) == {"0", "0.7"}


def test_html_numbers_are_the_json_numbers(file_store, run):
    json_key, html_key = write_report(file_store, as_input(run), load_spec_text(SPEC))
    report, html = file_store.get_json(json_key), file_store.get_text(html_key)
    page = Page()
    page.feed(html)
    assert json.loads(page.json_text) == report  # the embedded block is valid JSON, and it is report.json
    assert page.tables == ["table-metrics", "table-calls", "table-health", "table-temperature", "table-leaderboard", "table-judge",
                           "table-rubric", "table-forgetting", "table-training", "table-splits", "table-synthetic", "table-data-destinations",
                           "table-evaluation-set"]
    shown = set()
    for cell in page.cells:
        assert cell["path"] is not None, cell  # every number shown says where in report.json it comes from
        path, value = json.loads(cell["path"]), json.loads(cell["value"])
        assert _at(report, path) == value, (path, value)
        assert cell["text"] == (f"{value:.4f}" if isinstance(value, float) else str(value)), cell
        shown.add(tuple(path))
    for name in report["metrics"]:
        for key in ("rouge1", "rouge2", "rougeL", "bleu", "meteor", "semantic", "empty_rate", "truncated_rate", "loop_rate", "refusal_rate",
                    "function_call_rate", "function_name_accuracy", "function_args_accuracy"):
            assert ("metrics", name, key) in shown, (name, key)
        assert ("by_temperature", "0.7", name, "rouge1") in shown and ("by_temperature", "0.7", name, "n") in shown
    for key in ("wins", "losses", "ties", "invalid", "win_rate"):
        assert ("judge", "tuned:persona", key) in shown
    for name in report["judge_scores"]:
        assert {("judge_scores", name, k) for k in ("mean", "n", "invalid")} <= shown
    assert ("skipped_empty_reference",) in shown and ("evaluation_set", "skipped", "reference_in_prompt") in shown
    assert ("leaderboard", "1", "ci95", "0") in shown and ("leaderboard", "0", "base_score") in shown and ("forgetting", "tuned:persona") in shown
    assert report["verdict"] in html
    markup = html.replace(page.json_text, "")
    assert "&lt;b&gt;" in markup and "<b>" not in markup  # record text is escaped outside the JSON block
    assert "http://" not in html and "https://" not in html  # self-contained


def test_embedded_json_survives_script_and_comment_markup():
    tricky = {"reference": "</script><script>alert(1)</script> <!-- <script>", "n": 1.5}
    text = embed_json(tricky)
    assert "</" not in text and "<!--" not in text and json.loads(text) == tricky


PROBE = """<script>
window.addEventListener('load', function () {
  var out = {images: Array.from(document.images).map(function (i) { return [i.alt, i.naturalWidth]; })};
  var th = document.querySelector('#table-metrics th:nth-child(4)');  // rougeL
  th.click();
  out.ascending = Array.from(document.querySelectorAll('#table-metrics tbody tr')).map(function (r) { return r.cells[0].textContent; });
  th.click();
  out.descending = Array.from(document.querySelectorAll('#table-metrics tbody tr')).map(function (r) { return r.cells[0].textContent; });
  out.json = JSON.parse(document.getElementById('report-data').textContent).run_id;
  document.body.setAttribute('data-probe', JSON.stringify(out));
});
</script>"""


@pytest.mark.integration
def test_report_opens_in_headless_chromium_without_console_errors(file_store, run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.fail("chromium is not installed: run scripts/install_system_deps.sh (make test does)")
    _, html_key = write_report(file_store, as_input(run), load_spec_text(SPEC))
    page = Path(file_store.backend.root) / html_key
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
             "--hide-scrollbars", "--virtual-time-budget=5000"]
    out = subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000, out.stderr[-2000:]
    console = [line for line in out.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    # A copy with a probe script: every chart decoded, the sort script works, the JSON block parses in the browser.
    probed = tmp_path / "probed.html"
    # The probe is a script of the test's own, which the report's Content-Security-Policy would block: drop the policy in the copy.
    text = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page.read_text(encoding="utf-8"))
    probed.write_text(text.replace("</body></html>", PROBE + "</body></html>"), encoding="utf-8")
    dump = subprocess.run([browser, *flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert [line for line in dump.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line] == []
    start = dump.stdout.index('data-probe="') + len('data-probe="')
    import html as htmllib

    probe = json.loads(htmllib.unescape(dump.stdout[start : dump.stdout.index('"', start)]))
    assert [alt for alt, _ in probe["images"]] == ["metrics chart", "loss curves", "length_histogram.png"]
    assert all(width > 0 for _, width in probe["images"]), probe["images"]
    assert probe["ascending"] == ["base", "tuned:record_qa", "tuned:persona"] and probe["descending"] == probe["ascending"][::-1]
    assert probe["json"] == "plant-1"


def test_a_skipped_method_is_named_with_its_reason(file_store, run):
    run["stages"]["train:persona"] = {"state": "skipped", "artifact": None, "message": "no trainable examples among 4"}
    json_key, html_key = write_report(file_store, as_input(run), load_spec_text(SPEC))
    report = file_store.get_json(json_key)
    assert report["not_compared"] == {"persona": "train:persona: skipped: no trainable examples among 4"}
    assert "tuned:persona" not in [m["name"] for m in report["models"]]
    page = file_store.get_text(html_key)
    assert "persona is not compared: train:persona: skipped: no trainable examples among 4" in page


class Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.meta: list[dict[str, Any]] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.names |= {name for name, _ in attrs}
        if tag == "meta":
            self.meta.append(dict(attrs))


@pytest.mark.parametrize("label", ["x onfocus=alert(6) autofocus tabindex=1", "x' onfocus='alert(6)", 'x" onfocus="alert(6)', r"cost $\frac{$ and $x^$"])
def test_a_hostile_method_label_neither_injects_markup_nor_crashes_the_charts(file_store, run, label):
    """Issue 17, finding 2: a method label lands in ids, cells and chart legends; it stays text everywhere."""
    from synthtune.evaluator.report import render_html

    json_key, _ = write_report(file_store, as_input(run), load_spec_text(SPEC))
    report = json.loads(json.dumps(file_store.get_json(json_key)).replace("persona", label.replace("\\", "\\\\").replace('"', '\\"')))
    report["not_compared"] = {label: "train: skipped"}
    page = render_html(report, {})
    attrs = Attributes()
    attrs.feed(page)
    assert not attrs.names & {"onfocus", "autofocus", "tabindex", "alert(6)"}, attrs.names
    assert any(m.get("http-equiv") == "Content-Security-Policy" and "default-src 'none'" in m.get("content", "") for m in attrs.meta)
    parsed = Page()
    parsed.feed(page)
    assert json.loads(parsed.json_text) == report  # the embedded copy is still report.json, label and all


def test_report_json_has_sets_gate_and_determinism_from_the_evaluation(file_store, run):
    ev = file_store.open(run["stages"]["evaluate"]["artifact"]["id"])
    metrics = ev.read_json("metrics.json")
    models = metrics["models"]
    metrics["sets"] = {"exam": {"n": 4, "inside_training": 1, "leaderboard": [], "metrics": {n: {**v, "n": 4} for n, v in models.items()}}}
    metrics["gate"] = {"passed": False, "metric": "rougeL", "set": "exam", "model": "tuned:persona", "gain": 0.01, "ci_low": -0.02,
                       "ci_high": 0.04, "min_gain": 0.02, "significant": True, "reason": "needs more"}
    metrics["determinism"], metrics["determinism_temperature"] = {"base": 0.25, "tuned:persona": 0.75}, 0.7
    with file_store.create("evaluation", [], {"x": 1}, "test") as w:
        w.write_json("metrics.json", metrics)
        w.write_jsonl("predictions.jsonl", list(ev.iter_jsonl("predictions.jsonl")))
        run["stages"]["evaluate"]["artifact"] = w.commit().to_dict()
    json_key, html_key = write_report(file_store, as_input(run), load_spec_text(SPEC))
    report, html = file_store.get_json(json_key), file_store.get_text(html_key)
    assert report["sets"]["exam"]["n"] == 4 and report["sets"]["exam"]["metrics"]["base"]["rougeL"] == models["base"]["rougeL"]
    assert set(report["sets"]["exam"]["metrics"]["base"]) == set(report["metrics"]["base"])  # the same metric keys as `metrics`
    assert report["gate"]["passed"] is False and report["determinism"]["tuned:persona"] == 0.75
    page = Page()
    page.feed(html)
    assert {"table-set-exam", "table-gate", "table-determinism"} <= set(page.tables)
    assert "Promotion gate FAILED: needs more" in html


def test_report_says_where_the_records_went(file_store, run):
    spec = load_spec_text(SPEC)
    run = {**run, "data_destinations": [{"role": "teacher (generate)", "backend": "openai", "model": "gpt-4o-mini",
                                          "endpoint": "https://api.openai.com/v1", "external": True}]}
    json_key, html_key = write_report(file_store, as_input(run), spec)
    assert file_store.get_json(json_key)["data_destinations"] == run["data_destinations"]
    html = file_store.get_text(html_key)
    section = html[html.index("Where the records went"):html.index("table-evaluation-set")]
    assert "https://api.openai.com/v1" in section and "<td>yes</td>" in section
    del run["data_destinations"]  # a run recorded before this field: the report derives it from the spec
    json_key, _ = write_report(file_store, as_input(run), spec)
    assert file_store.get_json(json_key)["data_destinations"][0]["external"] is (spec.generate.teacher.backend == "openai")


def test_training_curves_come_from_the_adapters_tensorboard_events(file_store, run, tmp_path):
    """The report draws loss from the same event files TensorBoard reads, and says where they are."""
    from synthtune.trainer.events import write_events

    history = [{"step": s, "loss": 3.0 - s / 2, "learning_rate": 1e-4 * s, "grad_norm": 0.5} for s in (1, 2, 3, 4)]
    history.append({"step": 4, "eval_loss": 1.9})
    write_events(history, tmp_path / "runs" / "train")
    events = {f"runs/train/{p.name}": p.read_bytes() for p in (tmp_path / "runs" / "train").iterdir()}
    log = {"train_loss": [9.0], "train_steps": [1], "eval_loss": [], "eval_steps": [], "runtime_s": 1.0, "tokens_per_s": 5.0}
    ada = _art(file_store, "adapter", [], {"training_log.json": log, **events}, tag="events")
    run["stages"]["train:persona"] = {"state": "succeeded", "artifact": ada.to_dict()}
    json_key, html_key = write_report(file_store, as_input(run), load_spec_text(SPEC))
    training = file_store.get_json(json_key)["training"]["persona"]
    assert training["train_steps"] == [1, 2, 3, 4] and training["train_loss"] == pytest.approx([2.5, 2.0, 1.5, 1.0])
    assert training["eval_steps"] == [4] and training["eval_loss"] == pytest.approx([1.9])
    assert [p[0] for p in training["curves"]["train/learning_rate"]] == [1, 2, 3, 4]
    assert training["tensorboard"] == f"{ada.uri}/runs"
    assert f"{ada.uri}/runs" in file_store.get_text(html_key)
    # An adapter without events keeps its log's curve.
    assert file_store.get_json(json_key)["training"]["record_qa"]["train_loss"] == [2.0, 1.5, 1.2]
