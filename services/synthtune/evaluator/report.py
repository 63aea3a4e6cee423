"""report.json (the contract's keys) and a self-contained report.html built from the same numbers.

``run_record`` is the run's ``runs/<run_id>/run.json``: ``run_id``, ``name``, ``status`` and
``stages``, a mapping of stage name (``prepare``, ``generate:<m>``, ``train:<m>``, ``evaluate``)
to ``{"state": ..., "artifact": {"kind", "id", "uri"}}``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Store

CONTRACT_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "meteor")


def _artifact(store: Store, run: dict[str, Any], stage: str) -> Any:
    info = (run.get("stages") or {}).get(stage) or {}
    art = info.get("artifact") or {}
    return store.open(art["id"]) if art.get("id") else None


def build_report(store: Store, run: dict[str, Any], spec: PipelineSpec) -> dict[str, Any]:
    report: dict[str, Any] = {"run_id": run["run_id"], "name": run.get("name", spec.name), "status": run.get("status", "unknown"),
                              "datasets": {"prepared": {}, "synthetic": {}}, "models": [], "metrics": {}, "judge": {}, "training": {}}
    prepared = _artifact(store, run, "prepare")
    if prepared is not None:
        stats = prepared.read_json("stats.json")
        report["datasets"]["prepared"] = {k: int(stats["splits"].get(k, 0)) for k in ("train", "validation", "test")}
        counts = stats.get("counts", stats)
        report["datasets"]["prepared"].update(input=int(counts.get("input", 0)), rejected=int(counts.get("rejected", 0)))
    report["models"].append({"name": "base", "base_model": spec.train.base_model, "method": None, "adapter": None})
    for key in spec.method_keys():
        synthetic = _artifact(store, run, f"generate:{key}")
        if synthetic is not None:
            s = synthetic.stats
            report["datasets"]["synthetic"][key] = {"records": int(s.get("records", 0)), "rejected": int(s.get("rejected", 0))}
        adapter = _artifact(store, run, f"train:{key}")
        if adapter is not None:
            report["models"].append({"name": f"tuned:{key}", "base_model": spec.train.base_model, "method": key, "adapter": adapter.ref.uri})
            log = adapter.read_json("training_log.json")
            report["training"][key] = {"train_loss": log.get("train_loss", []), "eval_loss": log.get("eval_loss", []),
                                       "train_steps": log.get("train_steps", []), "eval_steps": log.get("eval_steps", []),
                                       "runtime_s": float(log.get("runtime_s", 0.0)), "tokens_per_s": float(log.get("tokens_per_s", 0.0))}
    evaluation = _artifact(store, run, "evaluate")
    if evaluation is not None:
        m = evaluation.read_json("metrics.json")
        for name, values in m["models"].items():
            report["metrics"][name] = {k: float(values[k]) for k in (*CONTRACT_METRICS, "semantic") if k in values}
            report["metrics"][name].update({k: float(values[k]) for k in values if k.endswith("_rate") or k.startswith("function_")})
        report["judge"] = m.get("judge", {})
        report["judge_scores"] = m.get("judge_scores", {})
        report["leaderboard"] = m.get("leaderboard", [])
        report["verdict"] = m.get("verdict", "")
        report["forgetting"] = m.get("forgetting", {})
        report["by_temperature"] = m.get("by_temperature", {})
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


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"<td class=num>{v:.4f}</td>"
        return f"<td>{html.escape(str(v))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2733;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #e3e8ee;padding-bottom:.3rem;margin-top:2rem}
.verdict{background:#eef6ee;border-left:5px solid #2f8f46;padding:.8rem 1rem;font-size:1.1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #dde3ea;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f6f9}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #e3e8ee}
.answers td{font-size:.9rem;white-space:pre-wrap}.muted{color:#667}
"""


def render_html(report: dict[str, Any], extra_images: dict[str, str]) -> str:
    charts = _charts(report)
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>synthtune report: {html.escape(report['name'])}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>{html.escape(report['name'])}</h1><p class=muted>run {html.escape(report['run_id'])} · status {html.escape(report['status'])}</p>"]
    if report.get("verdict"):
        parts.append(f"<p class=verdict id=verdict>{html.escape(report['verdict'])}</p>")
    if report["metrics"]:
        keys = [k for k in (*CONTRACT_METRICS, "semantic") if any(k in v for v in report["metrics"].values())]
        parts.append("<h2>Metrics per model</h2>")
        parts.append(_table(["model", *keys], [[n, *[v.get(k, float("nan")) for k in keys]] for n, v in report["metrics"].items()]))
        parts.append(f"<img alt='metrics chart' id=chart-metrics src='{charts['metrics']}'>")
    if report.get("leaderboard"):
        parts.append("<h2>Generation methods</h2>")
        parts.append(_table(["method", "metric", "score", "gain over base", "95% CI low", "95% CI high"],
                            [[r["method"], r["metric"], r["score"], r["delta"], r["ci95"][0], r["ci95"][1]] for r in report["leaderboard"]]))
    if report["judge"]:
        parts.append("<h2>LLM judge (tuned vs base, both orders)</h2>")
        parts.append(_table(["model", "wins", "losses", "ties", "win rate"],
                            [[n, j["wins"], j["losses"], j["ties"], j["win_rate"]] for n, j in report["judge"].items()]))
    if report.get("forgetting"):
        parts.append("<h2>General knowledge (forgetting probe)</h2>")
        parts.append(_table(["model", "accuracy"], [[n, float(v)] for n, v in report["forgetting"].items()]))
    if report["training"]:
        parts.append("<h2>Training</h2>")
        parts.append(_table(["method", "steps", "final train loss", "runtime (s)", "tokens/s"],
                            [[k, len(t["train_loss"]), t["train_loss"][-1] if t["train_loss"] else float("nan"), t["runtime_s"], t["tokens_per_s"]]
                             for k, t in report["training"].items()]))
        parts.append(f"<img alt='loss curves' id=chart-loss src='{charts['loss']}'>")
    d = report["datasets"]
    parts.append("<h2>Data</h2>")
    if d["prepared"]:
        parts.append(_table(["split", "records"], [[k, d["prepared"][k]] for k in ("train", "validation", "test")]))
    if d["synthetic"]:
        parts.append(_table(["method", "synthetic examples", "rejected"], [[k, v["records"], v["rejected"]] for k, v in d["synthetic"].items()]))
    for name, uri in extra_images.items():
        parts.append(f"<img alt='{html.escape(name)}' src='{uri}'>")
    if report.get("examples"):
        models = [m["name"] for m in report["models"]]
        parts.append("<h2>Side by side</h2>")
        rows = "".join(
            "<tr>" + f"<td>{html.escape(e['question'])}</td><td>{html.escape(e['reference'])}</td>"
            + "".join(f"<td>{html.escape(e['answers'].get(m, ''))}</td>" for m in models) + "</tr>"
            for e in report["examples"])
        head = "".join(f"<th>{html.escape(h)}</th>" for h in ["question", "reference", *models])
        parts.append(f"<table class=answers><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    parts.append(f"<script type='application/json' id=report-data>{html.escape(json.dumps(report))}</script></body></html>")
    return "".join(parts)


def write_report(store: Store, run_record: dict[str, Any], spec: PipelineSpec) -> tuple[str, str]:
    """Write runs/<run_id>/report.json and report.html; return their keys."""
    report = build_report(store, run_record, spec)
    images: dict[str, str] = {}
    prepared = _artifact(store, run_record, "prepare")
    if prepared is not None:
        for name in ("length_histogram.png", "length_boxplot.png"):
            if name in prepared.files:
                images[name] = "data:image/png;base64," + base64.b64encode(prepared.local_path(name).read_bytes()).decode()
    base = f"runs/{run_record['run_id']}"
    store.put_json(f"{base}/report.json", report)
    store.put_text(f"{base}/report.html", render_html(report, images))
    return f"{base}/report.json", f"{base}/report.html"
