"""report.html from report.json alone: sections of tables and charts, rendered by a Jinja2 template with autoescape.

Every number cell carries ``data-path`` (its place in report.json) and ``data-value`` (exact JSON), so
the HTML==JSON test and the table sorting read the number itself, not its 4-decimal rendering. A
Content-Security-Policy allows nothing from the network and only this report's own script.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

CONTRACT_METRICS = ("rouge1", "rouge2", "rougeL", "bleu", "meteor")
REFERENCE = (*CONTRACT_METRICS, "semantic")
HEALTH = (("empty_rate", "empty"), ("truncated_rate", "truncated"), ("loop_rate", "repetition loops"), ("refusal_rate", "refusals"))
CALLS = (("function_call_rate", "answers with a call"), ("function_name_accuracy", "right command"),
         ("function_args_accuracy", "right command and arguments"), ("function_calls", "episodes answered"))
SKIPPED = {"empty_reference": "tickets without a solution", "reference_in_prompt": "document chunks (reference is in the prompt)",
           "no_logged_command": "episodes without a logged command", "function_call_not_measured": "episodes (function_call metric off)"}


def num(value: Any, *path: str) -> dict[str, Any]:
    """A number cell: the value and its report.json path (keys; list indices as strings)."""
    return {"num": True, "value": value, "path": list(path)}


def _shown(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("synthtune.evaluator", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["tojson_attr"] = json.dumps  # plain text: autoescape then escapes its quotes for the attribute
    env.filters["shown"] = _shown
    return env


def _asset(name: str) -> str:
    return resources.files("synthtune.evaluator").joinpath("templates", name).read_text(encoding="utf-8")


def embed_json(obj: Any) -> str:
    """JSON for a <script type=application/json> block: valid JSON, and no '</' or '<!--' to end the block early."""
    return json.dumps(obj, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "\\u003c!--")


def _plain(label: str) -> str:
    """A label matplotlib shows as written: '$' would start mathtext (and a bad formula raises)."""
    return label.replace("$", r"\$")


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def charts(report: dict[str, Any]) -> dict[str, str]:
    """The metrics bar chart and the loss curves, as data: URIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    metrics = report.get("metrics") or {}
    if metrics:
        names = list(metrics)
        keys = [k for k in REFERENCE if all(k in metrics[n] for n in names)]
        fig, ax = plt.subplots(figsize=(8, 3.6))
        width = 0.8 / max(1, len(names))
        for i, n in enumerate(names):
            ax.bar([j + i * width for j in range(len(keys))], [metrics[n][k] for k in keys], width, label=_plain(n))
        ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(keys))], keys)
        ax.set_ylim(0, 1)
        ax.set_title("Base vs tuned on held-out records")
        ax.legend()
        fig.tight_layout()
        out["metrics"] = _png(fig)
    training = report.get("training") or {}
    if training:
        fig, ax = plt.subplots(figsize=(8, 3.6))
        for key, t in training.items():
            ax.plot(t["train_steps"] or range(1, len(t["train_loss"]) + 1), t["train_loss"], label=_plain(f"{key} train"))
            if t["eval_loss"]:
                ax.plot(t["eval_steps"], t["eval_loss"], marker="o", linestyle="--", label=_plain(f"{key} eval"))
        ax.set(xlabel="step", ylabel="loss", title="Training and evaluation loss")
        ax.legend()
        fig.tight_layout()
        out["loss"] = _png(fig)
    return out


def _table(id_: str, headers: list[str], rows: list[list[Any]], title: str = "") -> dict[str, Any]:
    return {"id": id_, "headers": headers, "rows": rows, "title": title}


def _section(title: str, tables: list[dict[str, Any]], note: str = "", images: list[dict[str, str]] | None = None,
             lines: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"title": title, "tables": tables, "note": note, "images": images or [], "lines": lines or []}


def _rates(metrics: dict[str, Any], columns: Any, root: list[str]) -> tuple[list[str], list[list[Any]]] | None:
    keys = [k for k, _ in columns if any(k in v for v in metrics.values())]
    if not keys:
        return None
    return ["model", *[label for k, label in columns if k in keys]], [[n, *[num(v.get(k), *root, n, k) for k in keys]] for n, v in metrics.items()]


def _metric_sections(r: dict[str, Any], images: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    metrics = r.get("metrics") or {}
    if metrics:
        keys = [k for k in REFERENCE if any(k in v for v in metrics.values())]
        img = [{"alt": "metrics chart", "id": "chart-metrics", "src": images["metrics"]}] if "metrics" in images else []
        out.append(_section("Metrics per model", [_table("table-metrics", ["model", *keys], [[n, *[num(v.get(k), "metrics", n, k) for k in keys]]
                                                                                            for n, v in metrics.items()])],
                            f"On the held-out test records at temperature {float(r.get('primary_temperature') or 0):g}.", img))
    for columns, title, note, id_ in ((CALLS, "Function calls (event-log episodes)", "Share of episode answers making the logged next command as a tool call.", "table-calls"),
                                      (HEALTH, "Answer health", "Share of answers that are empty, cut off at the token limit, looping, or refusing.", "table-health")):
        if found := _rates(metrics, columns, ["metrics"]):
            out.append(_section(title, [_table(id_, *found)], note))
    sweep = r.get("by_temperature") or {}
    if len(sweep) > 1:
        labels = {"function_name_accuracy": "call accuracy", "loop_rate": "loops", "n": "answers scored"}
        keys = [k for k in ("rouge1", "rougeL", "bleu", "meteor", "semantic", "function_name_accuracy", "loop_rate", "n")
                if any(k in v for t in sweep.values() for v in t.values())]
        rows = [[t, n, *[num(v.get(k), "by_temperature", t, n, k) for k in keys]] for t, models in sweep.items() for n, v in models.items()]
        out.append(_section("Temperature sweep", [_table("table-temperature", ["temperature", "model", *[labels.get(k, k) for k in keys]], rows)],
                            "Every sample at each temperature; the tables above use the first temperature."))
    if r.get("determinism"):
        rows = [[n, num(v, "determinism", n)] for n, v in r["determinism"].items()]
        out.append(_section("Determinism", [_table("table-determinism", ["model", "prompts whose samples agree"], rows)],
                            f"Share of prompts whose samples at temperature {r.get('determinism_temperature', '')} give the same normalised "
                            "answer or the same function call."))
    return out


def _board(rows: list[dict[str, Any]], root: list[str], id_: str, title: str = "") -> dict[str, Any]:
    return _table(id_, ["method", "metric", "score", "base", "gain over base", "95% CI low", "95% CI high"],
                  [[b["method"], b["metric"], num(b["score"], *root, str(i), "score"), num(b.get("base_score"), *root, str(i), "base_score"),
                    num(b["delta"], *root, str(i), "delta"), num(b["ci95"][0], *root, str(i), "ci95", "0"), num(b["ci95"][1], *root, str(i), "ci95", "1")]
                   for i, b in enumerate(rows)], title)


def _comparison_sections(r: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    lines = [{"id": f"not-compared-{k}", "text": f"{k} is not compared: {why}"} for k, why in (r.get("not_compared") or {}).items()]
    if r.get("leaderboard") or lines:
        out.append(_section("Generation methods", [_board(r["leaderboard"], ["leaderboard"], "table-leaderboard")] if r.get("leaderboard") else [],
                            lines=lines))
    for name, s in (r.get("sets") or {}).items():
        keys = [k for k in REFERENCE if any(k in v for v in s["metrics"].values())]
        tables = [_table(f"table-set-{name}", ["model", *keys, "n"], [[n, *[num(v.get(k), "sets", name, "metrics", n, k) for k in keys],
                                                                        num(v.get("n"), "sets", name, "metrics", n, "n")] for n, v in s["metrics"].items()])]
        if found := _rates(s["metrics"], CALLS, ["sets", name, "metrics"]):
            tables.append(_table(f"table-set-{name}-calls", *found, title="Function calls"))
        if s.get("leaderboard"):
            tables.append(_board(s["leaderboard"], ["sets", name, "leaderboard"], f"table-set-{name}-leaderboard", "Gain over base"))
        out.append(_section(f"Evaluation set: {name}", tables, f"{s['n']} items from your set, answered by every model; "
                            f"{s.get('inside_training', 0)} of them also appear in the training records."))
    if r.get("gate"):
        g = r["gate"]
        rows = [[k, num(g.get(k), "gate", k)] for k in ("gain", "ci_low", "ci_high", "min_gain")]
        out.append(_section("Promotion gate", [_table("table-gate", ["", "value"], [["passed", str(g["passed"])], ["metric", g["metric"]],
                                                                                    ["set", g["set"]], ["model", g.get("model") or "none"], *rows])],
                            g.get("reason") or ""))
    if r.get("judge"):
        rows = [[n, *[num(j.get(k), "judge", n, k) for k in ("wins", "losses", "ties", "invalid", "win_rate")]] for n, j in r["judge"].items()]
        out.append(_section("LLM judge (tuned vs base, both orders)", [_table("table-judge", ["model", "wins", "losses", "ties", "invalid", "win rate"], rows)],
                            "A win must hold with the answers in both orders; off-format verdicts count as invalid."))
    if r.get("judge_scores"):
        rows = [[n, *[num(j.get(k), "judge_scores", n, k) for k in ("mean", "n", "invalid")]] for n, j in r["judge_scores"].items()]
        out.append(_section("Rubric scores (1-10, judge)", [_table("table-rubric", ["model", "mean score", "scored", "invalid"], rows)]))
    if r.get("forgetting"):
        out.append(_section("General knowledge (forgetting probe)", [_table("table-forgetting", ["model", "accuracy"],
                                                                           [[n, num(v, "forgetting", n)] for n, v in r["forgetting"].items()])]))
    return out


def _data_sections(r: dict[str, Any], images: dict[str, str], extra: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    if r.get("training"):
        rows = [[k, len(t["train_loss"]), num(t["train_loss"][-1], "training", k, "train_loss", str(len(t["train_loss"]) - 1)) if t["train_loss"] else num(None),
                 num(t["runtime_s"], "training", k, "runtime_s"), num(t["tokens_per_s"], "training", k, "tokens_per_s"),
                 t.get("tensorboard", "")] for k, t in r["training"].items()]
        img = [{"alt": "loss curves", "id": "chart-loss", "src": images["loss"]}] if "loss" in images else []
        out.append(_section("Training", [_table("table-training", ["method", "steps", "final train loss", "runtime (s)", "tokens/s",
                                                                    "TensorBoard events (tensorboard --logdir)"], rows)], images=img))
    d = r["datasets"]
    tables = []
    if d.get("prepared"):
        tables.append(_table("table-splits", ["split", "records"], [[k, num(d["prepared"][k], "datasets", "prepared", k)] for k in ("train", "validation", "test")]))
    if d.get("synthetic"):
        tables.append(_table("table-synthetic", ["method", "synthetic examples", "rejected"],
                             [[k, num(v["records"], "datasets", "synthetic", k, "records"), num(v["rejected"], "datasets", "synthetic", k, "rejected")]
                              for k, v in d["synthetic"].items()]))
    if r.get("data_destinations") is not None:
        tables.append(_table("table-data-destinations", ["role", "model", "endpoint", "outside the cluster"],
                             [[d["role"], d["model"], d["endpoint"], "yes" if d["external"] else "no"] for d in r["data_destinations"]],
                             "Where the records went"))
    if es := r.get("evaluation_set"):
        rows = [["evaluated", num(es["evaluated"], "evaluation_set", "evaluated")],
                ["scored against a reference", num(es["reference_records"], "evaluation_set", "reference_records")],
                ["scored by function call", num(es["function_call_records"], "evaluation_set", "function_call_records")],
                ["skipped: empty reference", num(r.get("skipped_empty_reference", 0), "skipped_empty_reference")]]
        rows += [[f"skipped: {SKIPPED.get(k, k)}", num(v, "evaluation_set", "skipped", k)] for k, v in es["skipped"].items() if k != "empty_reference"]
        tables.append(_table("table-evaluation-set", ["", "records"], rows, "Test records"))
    if d.get("generation_filters"):
        keys = sorted({k for v in d["generation_filters"].values() for k in v["reasons"]})
        rows = [[m, num(v["kept_share"], "datasets", "generation_filters", m, "kept_share"),
                 *[num(v["reasons"].get(k, 0), "datasets", "generation_filters", m, "reasons", k) for k in keys]] for m, v in d["generation_filters"].items()]
        tables.append(_table("table-filters", ["method", "share kept", *keys], rows, "Generation filters (rejects by reason)"))
    out.append(_section("Data", tables, images=[{"alt": k, "id": f"image-{i}", "src": v} for i, (k, v) in enumerate(extra.items())]))
    return out


def render_html(report: dict[str, Any], extra_images: dict[str, str]) -> str:
    """The self-contained report page; ``extra_images`` are data: URIs of the prepared data's plots."""
    images = charts(report)
    js = _asset("report.js")
    script_hash = base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; base-uri 'none'; form-action 'none'"
    sections = _metric_sections(report, images) + _comparison_sections(report) + _data_sections(report, images, extra_images)
    return _env().get_template("report.html.j2").render(
        r=report, sections=sections, examples=report.get("examples") or [], models=[m["name"] for m in report.get("models", [])],
        css=Markup(_asset("report.css")), js=Markup(js), data=Markup(embed_json(report)), csp=csp)
