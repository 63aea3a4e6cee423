"""report.json (the contract's keys) from the run's artifacts, and report.html rendered from report.json alone.

Its input is the run's ``ReportInput`` (``synthtune.spec.graph``; the controller builds it): the
artifact ids of the prepared data, each method's synthetic data and adapter, the evaluation, and
why a method stopped; never the run record itself. This module owns where a run's report lives
(``report_paths``).
"""

from __future__ import annotations

import base64
from typing import Any

from synthtune.evaluator.report_html import CONTRACT_METRICS, embed_json, render_html
from synthtune.spec.dataflow import data_destinations
from synthtune.spec.graph import MethodOutcome, ReportInput
from synthtune.spec.pipeline import PipelineSpec
from synthtune.store import Store
from synthtune.tbevents import artifact_curves

__all__ = ["build_report", "embed_json", "render_html", "report_paths", "write_report"]


def report_paths(run_id: str) -> tuple[str, str]:
    """Store keys of a run's report.json and report.html."""
    return f"runs/{run_id}/report.json", f"runs/{run_id}/report.html"


def _training(adapter: Any) -> dict[str, Any]:
    """One adapter's training: the curves from its TensorBoard events (what TensorBoard shows), else its log."""
    log = adapter.read_json("training_log.json")
    out = {"train_loss": log.get("train_loss", []), "eval_loss": log.get("eval_loss", []),
           "train_steps": log.get("train_steps", []), "eval_steps": log.get("eval_steps", []),
           "runtime_s": float(log.get("runtime_s", 0.0)), "tokens_per_s": float(log.get("tokens_per_s", 0.0))}
    curves = artifact_curves(adapter)
    if curves:
        out["tensorboard"] = f"{adapter.ref.uri}/runs"
        out["curves"] = {tag: [[step, value] for step, value in points] for tag, points in curves.items()}
        for split, tag in (("train", "train/loss"), ("eval", "eval/loss")):
            if curves.get(tag):
                out[f"{split}_steps"] = [step for step, _ in curves[tag]]
                out[f"{split}_loss"] = [value for _, value in curves[tag]]
    return out


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
            if "candidates" in s:
                report["datasets"].setdefault("generation_filters", {})[key] = {
                    "kept_share": float(s.get("kept_share", 0.0)), "candidates": int(s["candidates"]),
                    "reasons": {k: int(v) for k, v in (s.get("reasons") or {}).items()}}
        adapter = _artifact(store, outcomes[key].adapter)
        if adapter is not None:
            report["models"].append({"name": f"tuned:{key}", "base_model": spec.train.base_model, "method": key, "adapter": adapter.ref.uri})
            report["training"][key] = _training(adapter)
    # Methods that did not reach the leaderboard, and why (a skipped or failed stage says so).
    report["not_compared"] = {key: o.stopped for key, o in outcomes.items() if o.stopped}
    evaluation = _artifact(store, run.evaluation)
    if evaluation is not None:
        m = evaluation.read_json("metrics.json")
        for name, values in m["models"].items():
            report["metrics"][name] = _numbers(values)
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
        report["sets"] = {name: {"n": int(v["n"]), "inside_training": int(v.get("inside_training", 0)), "leaderboard": v.get("leaderboard", []),
                                 "metrics": {model: _numbers(values) for model, values in v["metrics"].items()}}
                          for name, v in (m.get("sets") or {}).items()}
        if "determinism" in m:
            report["determinism"] = m["determinism"]
            report["determinism_temperature"] = m.get("determinism_temperature")
        if m.get("gate") is not None:
            report["gate"] = m["gate"]
    return report


def _numbers(values: dict[str, Any]) -> dict[str, Any]:
    """One model's metrics as report.json shows them (the same keys under ``metrics`` and ``sets.<set>.metrics``)."""
    out: dict[str, Any] = {k: float(values[k]) for k in (*CONTRACT_METRICS, "semantic") if k in values}
    out.update({k: float(values[k]) for k in values if k.endswith("_rate") or k.endswith("_accuracy")})
    out.update({k: int(values[k]) for k in ("n", "function_calls") if k in values})
    return out


def _examples(evaluation: Any, metrics: dict[str, Any], k: int) -> list[dict[str, Any]]:
    primary = metrics.get("primary_temperature", 0.0)
    rows: dict[str, dict[str, Any]] = {}
    for p in evaluation.iter_jsonl("predictions.jsonl"):
        if p.get("set") or p["temperature"] != primary or p.get("sample", 0) != 0:
            continue
        row = rows.setdefault(p["id"], {"id": p["id"], "question": p["prompt"], "reference": p["reference"], "answers": {}})
        row["answers"][p["model"]] = p["prediction"]
    return list(rows.values())[:k]


def write_report(store: Store, run: ReportInput, spec: PipelineSpec) -> tuple[str, str]:
    """Write runs/<run_id>/report.json, then report.html from it; return their keys."""
    report = build_report(store, run, spec)
    images: dict[str, str] = {}
    prepared = _artifact(store, run.prepared)
    if prepared is not None:
        for name in ("length_histogram.png", "length_boxplot.png"):
            if name in prepared.files:
                images[name] = "data:image/png;base64," + base64.b64encode(prepared.local_path(name).read_bytes()).decode()
    json_key, html_key = report_paths(run.run_id)
    store.put_json(json_key, report)
    store.put_text(html_key, render_html(store.get_json(json_key), images))
    return json_key, html_key
