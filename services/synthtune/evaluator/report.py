"""report.json (the contract's keys) and a self-contained report.html built from the same numbers.

Its input is the run's ``ReportInput`` (``synthtune.spec.graph``; the controller builds it):
the artifact ids of the prepared data, each method's synthetic data and adapter, the
evaluation, and why a method stopped; never the run record itself.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

from synthtune.spec.dataflow import data_destinations
from synthtune.spec.graph import MethodOutcome, ReportInput
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Store

CONTRACT_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "meteor")


def _artifact(store: Store, artifact_id: str | None) -> Any:
    return store.open(artifact_id) if artifact_id else None


def build_report(store: Store, run: ReportInput, spec: PipelineSpec) -> dict[str, Any]:
    report: dict[str, Any] = {"run_id": run.run_id, "name": run.name, "status": run.status,
                              "datasets": {"prepared": {}, "synthetic": {}}, "models": [], "metrics": {}, "judge": {}, "training": {}}
    outcomes = {key: run.methods.get(key) or MethodOutcome() for key in spec.method_keys()}
    prepared = _artifact(store, run.prepared)
    if prepared is not None:
        stats = prepared.read_json("stats.json")
        report["datasets"]["prepared"] = {k: int(stats["splits"].get(k, 0)) for k in ("train", "validation", "test")}
        counts = stats.get("counts", stats)
        report["datasets"]["prepared"].update(input=int(counts.get("input", 0)), rejected=int(counts.get("rejected", 0)))
    report["data_destinations"] = run.data_destinations or data_destinations(spec)
    report["models"].append({"name": "base", "base_model": spec.train.base_model, "method": None, "adapter": None})
    for key in spec.method_keys():
        synthetic = _artifact(store, outcomes[key].synthetic)
        if synthetic is not None:
            s = synthetic.stats
            report["datasets"]["synthetic"][key] = {"records": int(s.get("records", 0)), "rejected": int(s.get("rejected", 0))}
        adapter = _artifact(store, outcomes[key].adapter)
        if adapter is not None:
            report["models"].append({"name": f"tuned:{key}", "base_model": spec.train.base_model, "method": key, "adapter": adapter.ref.uri})
            log = adapter.read_json("training_log.json")
            report["training"][key] = {"train_loss": log.get("train_loss", []), "eval_loss": log.get("eval_loss", []),
                                       "train_steps": log.get("train_steps", []), "eval_steps": log.get("eval_steps", []),
                                       "runtime_s": float(log.get("runtime_s", 0.0)), "tokens_per_s": float(log.get("tokens_per_s", 0.0))}
    # Methods that did not reach the leaderboard, and why (a skipped or failed stage says so).
    report["not_compared"] = {key: o.stopped for key, o in outcomes.items() if o.stopped}
    evaluation = _artifact(store, run.evaluation)
    if evaluation is not None:
        m = evaluation.read_json("metrics.json")
        for name, values in m["models"].items():
            report["metrics"][name] = {k: float(values[k]) for k in (*CONTRACT_METRICS, "semantic") if k in values}
            report["metrics"][name].update({k: float(values[k]) for k in values if k.endswith("_rate") or k.endswith("_accuracy")})
            report["metrics"][name].update({k: int(values[k]) for k in ("n", "function_calls") if k in values})
        report["judge"] = m.get("judge", {})
        report["judge_scores"] = m.get("judge_scores", {})
        report["leaderboard"] = m.get("leaderboard", [])
        report["verdict"] = m.get("verdict", "")
        report["forgetting"] = m.get("forgetting", {})
        report["by_temperature"] = m.get("by_temperature", {})
        report["primary_temperature"] = m.get("primary_temperature", 0.0)
        report["skipped_empty_reference"] = int(m.get("skipped_empty_reference", 0))
        report["evaluation_set"] = {"evaluated": int(m.get("test_records", 0)), "reference_records": int(m.get("reference_records", m.get("test_records", 0))),
                                    "function_call_records": int(m.get("function_call_records", 0)),
                                    "skipped": {k: int(v) for k, v in (m.get("skipped") or {}).items()}}
        report["examples"] = _examples(evaluation, m, spec.evaluate.examples)
    return report


def _examples(evaluation: Any, metrics: dict[str, Any], k: int) -> list[dict[str, Any]]:
    primary = metrics.get("primary_temperature", 0.0)
    rows: dict[str, dict[str, Any]] = {}
    for p in evaluation.iter_jsonl("predictions.jsonl"):
        if p["temperature"] != primary or p.get("sample", 0) != 0:
            continue
        row = rows.setdefault(p["id"], {"id": p["id"], "question": p["prompt"], "reference": p["reference"], "answers": {}})
        row["answers"][p["model"]] = p["prediction"]
    return list(rows.values())[:k]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _charts(report: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = {}
    if report["metrics"]:
        names = list(report["metrics"])
        keys = [k for k in (*CONTRACT_METRICS, "semantic") if all(k in report["metrics"][n] for n in names)]
        fig, ax = plt.subplots(figsize=(8, 3.6))
        width = 0.8 / max(1, len(names))
        for i, n in enumerate(names):
            ax.bar([j + i * width for j in range(len(keys))], [report["metrics"][n][k] for k in keys], width, label=n)
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(keys))], keys)
        ax.set_ylim(0, 1)
        ax.set_title("Base vs tuned on held-out records")
        ax.legend()
        fig.tight_layout()
        charts["metrics"] = _png(fig)
    if report["training"]:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        for key, t in report["training"].items():
            ax.plot(t["train_steps"] or range(1, len(t["train_loss"]) + 1), t["train_loss"], label=f"{key} train")
            if t["eval_loss"]:
                ax.plot(t["eval_steps"], t["eval_loss"], marker="o", linestyle="--", label=f"{key} eval")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("Training and evaluation loss")
        ax.legend()
        fig.tight_layout()
        charts["loss"] = _png(fig)
    return charts


class Num:
    """A number shown in a table, with the report.json path it comes from (keys; list indices as strings).

    Its cell carries ``data-path`` and ``data-value`` (exact JSON), so the HTML==JSON test and the
    table sorting read the number itself, not its 4-decimal rendering."""

    def __init__(self, value: Any, *path: str) -> None:
        self.value, self.path = value, list(path)


def _cell(v: Any) -> str:
    if isinstance(v, Num):
        if v.value is None or (isinstance(v.value, float) and v.value != v.value):
            return "<td class=num>–</td>"
        shown = f"{v.value:.4f}" if isinstance(v.value, float) else str(v.value)
        attrs = f" data-path='{html.escape(json.dumps(v.path))}' data-value='{html.escape(json.dumps(v.value))}'"
        return f"<td class=num{attrs}>{shown}</td>"
    return f"<td>{html.escape(str(v))}</td>"


def _table(headers: list[str], rows: list[list[Any]], table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    ident = f" id={table_id}" if table_id else ""
    return f"<table class=sortable{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2733;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #e3e8ee;padding-bottom:.3rem;margin-top:2rem}
.verdict{background:#eef6ee;border-left:5px solid #2f8f46;padding:.8rem 1rem;font-size:1.1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #dde3ea;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f6f9}table.sortable th{cursor:pointer}table.sortable th[aria-sort]::after{content:attr(data-arrow);color:#667}
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #e3e8ee}
.answers td{font-size:.9rem;white-space:pre-wrap}.muted{color:#667}
"""

# Click a column header to sort its table (numbers by value); no network, no libraries.
SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], index = th.cellIndex;
    var down = th.getAttribute('aria-sort') === 'ascending';
    table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', down ? 'descending' : 'ascending');
    th.setAttribute('data-arrow', down ? ' \\u25bc' : ' \\u25b2');
    var key = function (row) {
      var cell = row.cells[index];
      var v = cell.getAttribute('data-value');
      return v !== null ? parseFloat(v) : cell.textContent.trim().toLowerCase();
    };
    Array.from(body.rows).sort(function (a, b) {
      var x = key(a), y = key(b), c = x < y ? -1 : x > y ? 1 : 0;
      return down ? -c : c;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
"""


def embed_json(obj: Any) -> str:
    """JSON for a <script type=application/json> block: valid JSON, and no '</' or '<!--' to end the block early."""
    return json.dumps(obj, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "\\u003c!--")


HEALTH = (("empty_rate", "empty"), ("truncated_rate", "truncated"), ("loop_rate", "repetition loops"), ("refusal_rate", "refusals"))
CALLS = (("function_call_rate", "answers with a call"), ("function_name_accuracy", "right command"),
         ("function_args_accuracy", "right command and arguments"), ("function_calls", "episodes answered"))
SKIPPED = {"empty_reference": "tickets without a solution", "reference_in_prompt": "document chunks (reference is in the prompt)",
           "no_logged_command": "episodes without a logged command", "function_call_not_measured": "episodes (function_call metric off)"}


def _rate_section(metrics: dict[str, Any], columns: Any, title: str, note: str, table_id: str) -> list[str]:
    """A section of per-model rates (metrics.<model>.<key>), with the columns that any model has."""
    keys = [k for k, _ in columns if any(k in v for v in metrics.values())]
    if not keys:
        return []
    return [f"<h2>{title}</h2>", f"<p class=muted>{note}</p>",
            _table(["model", *[label for k, label in columns if k in keys]],
                   [[n, *[Num(v.get(k), "metrics", n, k) for k in keys]] for n, v in metrics.items()], table_id)]


def render_html(report: dict[str, Any], extra_images: dict[str, str]) -> str:
    charts = _charts(report)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>synthtune report: {html.escape(report['name'])}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(report['name'])}</h1><p class=muted>run {html.escape(report['run_id'])} · status {html.escape(report['status'])}</p>"]
    if report.get("verdict"):
        parts.append(f"<p class=verdict id=verdict>{html.escape(report['verdict'])}</p>")
    metrics = report["metrics"]
    if metrics:
        keys = [k for k in (*CONTRACT_METRICS, "semantic") if any(k in v for v in metrics.values())]
        parts.append("<h2>Metrics per model</h2>")
        temp = report.get("primary_temperature")
        if temp is not None:
            parts.append(f"<p class=muted>On the held-out test records at temperature {float(temp):g}.</p>")
        parts.append(_table(["model", *keys], [[n, *[Num(v.get(k), "metrics", n, k) for k in keys]] for n, v in metrics.items()], "table-metrics"))
        if "metrics" in charts:
            parts.append(f"<img alt='metrics chart' id=chart-metrics src='{charts['metrics']}'>")
    parts += _rate_section(metrics, CALLS, "Function calls (event-log episodes)",
                           "Share of episode answers making the logged next command as a tool call.", "table-calls")
    parts += _rate_section(metrics, HEALTH, "Answer health",
                           "Share of answers that are empty, cut off at the token limit, looping, or refusing.", "table-health")
    sweep = report.get("by_temperature") or {}
    if len(sweep) > 1:
        labels = {"function_name_accuracy": "call accuracy", "loop_rate": "loops", "n": "answers scored"}
        keys = [k for k in ("rouge1", "rougeL", "bleu", "meteor", "semantic", "function_name_accuracy", "loop_rate", "n")
                if any(k in v for t in sweep.values() for v in t.values())]
        parts.append("<h2>Temperature sweep</h2>")
        parts.append("<p class=muted>Every sample at each temperature; the tables above use the first temperature.</p>")
        parts.append(_table(["temperature", "model", *[labels.get(k, k) for k in keys]],
                            [[t, n, *[Num(v.get(k), "by_temperature", t, n, k) for k in keys]] for t, models in sweep.items() for n, v in models.items()],
                            "table-temperature"))
    if report.get("leaderboard") or report.get("not_compared"):
        parts.append("<h2>Generation methods</h2>")
    for key, why in (report.get("not_compared") or {}).items():
        parts.append(f"<p class=muted id=not-compared-{html.escape(key)}>{html.escape(key)} is not compared: {html.escape(why)}</p>")
    if report.get("leaderboard"):
        parts.append(_table(["method", "metric", "score", "base", "gain over base", "95% CI low", "95% CI high"],
                            [[r["method"], r["metric"], Num(r["score"], "leaderboard", str(i), "score"),
                              Num(r.get("base_score"), "leaderboard", str(i), "base_score"), Num(r["delta"], "leaderboard", str(i), "delta"),
                              Num(r["ci95"][0], "leaderboard", str(i), "ci95", "0"), Num(r["ci95"][1], "leaderboard", str(i), "ci95", "1")]
                             for i, r in enumerate(report["leaderboard"])], "table-leaderboard"))
    if report["judge"]:
        parts.append("<h2>LLM judge (tuned vs base, both orders)</h2>")
        parts.append("<p class=muted>A win must hold with the answers in both orders; off-format verdicts count as invalid.</p>")
        parts.append(_table(["model", "wins", "losses", "ties", "invalid", "win rate"],
                            [[n, *[Num(j.get(k), "judge", n, k) for k in ("wins", "losses", "ties", "invalid", "win_rate")]]
                             for n, j in report["judge"].items()], "table-judge"))
    if report.get("judge_scores"):
        parts.append("<h2>Rubric scores (1-10, judge)</h2>")
        parts.append(_table(["model", "mean score", "scored", "invalid"],
                            [[n, *[Num(j.get(k), "judge_scores", n, k) for k in ("mean", "n", "invalid")]] for n, j in report["judge_scores"].items()],
                            "table-rubric"))
    if report.get("forgetting"):
        parts.append("<h2>General knowledge (forgetting probe)</h2>")
        parts.append(_table(["model", "accuracy"], [[n, Num(v, "forgetting", n)] for n, v in report["forgetting"].items()], "table-forgetting"))
    if report["training"]:
        parts.append("<h2>Training</h2>")
        parts.append(_table(["method", "steps", "final train loss", "runtime (s)", "tokens/s"],
                            [[k, len(t["train_loss"]),
                              Num(t["train_loss"][-1], "training", k, "train_loss", str(len(t["train_loss"]) - 1)) if t["train_loss"] else Num(None),
                              Num(t["runtime_s"], "training", k, "runtime_s"), Num(t["tokens_per_s"], "training", k, "tokens_per_s")]
                             for k, t in report["training"].items()], "table-training"))
        if "loss" in charts:
            parts.append(f"<img alt='loss curves' id=chart-loss src='{charts['loss']}'>")
    d = report["datasets"]
    parts.append("<h2>Data</h2>")
    if d["prepared"]:
        parts.append(_table(["split", "records"], [[k, Num(d["prepared"][k], "datasets", "prepared", k)] for k in ("train", "validation", "test")],
                            "table-splits"))
    if d["synthetic"]:
        parts.append(_table(["method", "synthetic examples", "rejected"],
                            [[k, Num(v["records"], "datasets", "synthetic", k, "records"), Num(v["rejected"], "datasets", "synthetic", k, "rejected")]
                             for k, v in d["synthetic"].items()], "table-synthetic"))
    parts.append("<h3>Where the records went</h3>")
    parts.append(_table(["role", "model", "endpoint", "outside the cluster"],
                        [[d["role"], d["model"], d["endpoint"], "yes" if d["external"] else "no"] for d in report["data_destinations"]],
                        "table-data-destinations"))
    es = report.get("evaluation_set")
    if es:
        rows = [["evaluated", Num(es["evaluated"], "evaluation_set", "evaluated")],
                ["scored against a reference", Num(es["reference_records"], "evaluation_set", "reference_records")],
                ["scored by function call", Num(es["function_call_records"], "evaluation_set", "function_call_records")],
                ["skipped: empty reference", Num(report.get("skipped_empty_reference", 0), "skipped_empty_reference")]]
        rows += [[f"skipped: {SKIPPED.get(k, k)}", Num(v, "evaluation_set", "skipped", k)] for k, v in es["skipped"].items() if k != "empty_reference"]
        parts.append("<h3>Test records</h3>")
        parts.append(_table(["", "records"], rows, "table-evaluation-set"))
    for name, uri in extra_images.items():
        parts.append(f"<img alt='{html.escape(name)}' src='{uri}'>")
    if report.get("examples"):
        models = [m["name"] for m in report["models"]]
        parts.append("<h2>Side by side</h2>")
        rows_html = "".join(
            "<tr>" + f"<td>{html.escape(e['question'])}</td><td>{html.escape(e['reference'])}</td>"
            + "".join(f"<td>{html.escape(e['answers'].get(m, ''))}</td>" for m in models) + "</tr>"
            for e in report["examples"])
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["question", "reference", *models])
        parts.append(f"<table class=answers><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>")
    parts.append(f"<script type='application/json' id=report-data>{embed_json(report)}</script>")
    parts.append(f"<script>{SORT_JS}</script></body></html>")
    return "".join(parts)


def write_report(store: Store, run: ReportInput, spec: PipelineSpec) -> tuple[str, str]:
    """Write runs/<run_id>/report.json and report.html; return their keys."""
    report = build_report(store, run, spec)
    images: dict[str, str] = {}
    prepared = _artifact(store, run.prepared)
    if prepared is not None:
        for name in ("length_histogram.png", "length_boxplot.png"):
            if name in prepared.files:
                images[name] = "data:image/png;base64," + base64.b64encode(prepared.local_path(name).read_bytes()).decode()
    base = run.base_key
    store.put_json(f"{base}/report.json", report)
    store.put_text(f"{base}/report.html", render_html(report, images))
    return f"{base}/report.json", f"{base}/report.html"
