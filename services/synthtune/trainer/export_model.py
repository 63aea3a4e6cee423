"""`synthtune export-model`: a run's tuned model as the PEFT adapter, merged safetensors, or GGUF (f16 and q8_0).

Every export carries a model card (README.md) with the run's evaluation results. A GGUF export is
checked before it is handed over: the f16 file, loaded back in transformers with ``gguf_file=``,
must give the merged model's greedy answers on the report's first prompts.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from synthtune.errors import InvalidInput, SynthtuneError
from synthtune.progress import NULL_PROGRESS, Progress
from synthtune.store import Artifact

FORMATS = ("peft", "merged", "gguf")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "training_log.json")


def _is_full_model(art: Artifact) -> bool:
    return "config.json" in art.files and "adapter_config.json" not in art.files


def merge(art: Artifact, base_path: str, out: Path) -> Path:
    """Base model plus adapter, merged, saved as safetensors with its tokenizer in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out.mkdir(parents=True, exist_ok=True)
    if _is_full_model(art):
        for name in art.files:
            shutil.copyfile(art.local_path(name), out / name)
        return out
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    targets = json.loads(art.local_path("adapter_config.json").read_text(encoding="utf-8")).get("target_modules") or []
    if getattr(base.config, "tie_word_embeddings", False) and "lm_head" in targets:
        # Merging into a tied lm_head would change the input embeddings too, which the evaluated (unmerged) model
        # never did: give lm_head its own copy first; the export then carries both (GGUF: output.weight).
        base.lm_head.weight = torch.nn.Parameter(base.get_input_embeddings().weight.detach().clone())
        base.config.tie_word_embeddings = False
    model = PeftModel.from_pretrained(base, str(art.download())).merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(out)
    return out


def greedy_answers(folder: Path, prompts: list[list[dict[str, str]]], max_new_tokens: int, gguf_file: str | None = None) -> list[str]:
    """Greedy answers of the model in ``folder`` (a GGUF file in it when ``gguf_file``) to chat prompts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kwargs).eval()
    out = []
    with torch.no_grad():
        for messages in prompts:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
            gen = model.generate(**ids, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.eos_token_id)
            out.append(tokenizer.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


def model_card(run_id: str, method: str, base_model: str, fmt: str, report: dict[str, Any] | None, files: list[str],
               check: dict[str, Any] | None) -> str:
    lines = [f"# {method} — tuned by synthtune", "", f"Run `{run_id}`, method `{method}`, base model `{base_model}`, format `{fmt}`.", ""]
    if report:
        if report.get("verdict"):
            lines += [report["verdict"], ""]
        metrics = report.get("metrics") or {}
        keys = [k for k in ("rouge1", "rouge2", "rougeL", "bleu", "meteor", "semantic") if any(k in v for v in metrics.values())]
        if keys:
            lines += ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
            lines += [f"| {n} | " + " | ".join(f"{v.get(k, float('nan')):.4f}" for k in keys) + " |" for n, v in metrics.items()]
            lines.append("")
        if report.get("gate"):
            g = report["gate"]
            lines += [f"Promotion gate: {'passed' if g.get('passed') else 'FAILED'} ({g.get('reason', '')}).", ""]
        for name, s in (report.get("sets") or {}).items():
            rl = {m: v.get("rougeL") for m, v in s.get("metrics", {}).items()}
            lines += [f"Evaluation set `{name}` ({s.get('n')} items), ROUGE-L: " + ", ".join(f"{m} {v:.4f}" for m, v in rl.items() if v is not None), ""]
    if check:
        lines += [f"GGUF check: the f16 file loaded in transformers gave the merged model's greedy answers on {check['agree']} of "
                  f"{check['prompts']} report prompts (q8_0: {check.get('q8_0_agree', '?')} of {check['prompts']}).", ""]
    lines += ["Files: " + ", ".join(f"`{f}`" for f in files), ""]
    if fmt == "gguf":
        lines += ["Run it with Ollama: `ollama create my-model -f Modelfile && ollama run my-model`.", ""]
    return "\n".join(lines)


def _first_prompts(report: dict[str, Any] | None, system: str, k: int) -> list[list[dict[str, str]]]:
    examples = (report or {}).get("examples") or []
    return [[{"role": "system", "content": system}, {"role": "user", "content": e["question"]}] for e in examples[:k]]


def export_model(art: Artifact, base_path: str, fmt: str, out: Path, *, run_id: str, method: str, base_model: str,
                 report: dict[str, Any] | None, system: str, check_prompts: int = 3, max_new_tokens: int = 24,
                 progress: Progress = NULL_PROGRESS) -> list[Path]:
    """Write the export into the folder ``out``; return the files written."""
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out.mkdir(parents=True, exist_ok=True)
    check = None
    if fmt == "peft":
        if _is_full_model(art):
            raise InvalidInput(f"method {method} was trained as a full model, not an adapter: export it as --format merged or gguf")
        for name in ADAPTER_FILES:
            if name in art.files:
                shutil.copyfile(art.local_path(name), out / name)
    elif fmt == "merged":
        progress.note("merging the adapter into the base model")
        merge(art, base_path, out)
    else:
        check = _export_gguf(art, base_path, out, method, _first_prompts(report, system, check_prompts), max_new_tokens, progress)
    files = sorted(p.name for p in out.iterdir() if p.is_file() and p.name != "README.md")
    (out / "README.md").write_text(model_card(run_id, method, base_model, fmt, report, files, check), encoding="utf-8")
    return sorted(p for p in out.iterdir() if p.is_file())


def _export_gguf(art: Artifact, base_path: str, out: Path, method: str, prompts: list[list[dict[str, str]]], max_new_tokens: int,
                 progress: Progress) -> dict[str, Any]:
    from synthtune.trainer.gguf_export import write_gguf

    with tempfile.TemporaryDirectory(prefix="synthtune-merge-") as tmp:
        merged = Path(tmp) / "merged"
        progress.note("merging the adapter into the base model")
        merge(art, base_path, merged)
        config = json.loads((merged / "config.json").read_text(encoding="utf-8"))
        from synthtune.trainer.gguf_export import architecture

        architecture(config, merged)  # an unknown architecture is refused before anything is written
        paths = {}
        for qtype in ("f16", "q8_0"):
            progress.note(f"writing {method}-{qtype}.gguf")
            paths[qtype] = write_gguf(merged, out / f"{method}-{qtype}.gguf", qtype, f"synthtune {method}")
        (out / "Modelfile").write_text(f"FROM ./{paths['q8_0'].name}\nPARAMETER temperature 0\n", encoding="utf-8")
        if not prompts:
            return {"prompts": 0, "agree": 0, "q8_0_agree": 0}
        progress.note(f"checking the GGUF against the merged model on {len(prompts)} report prompts")
        want = greedy_answers(merged, prompts, max_new_tokens)
        got = {q: greedy_answers(out, prompts, max_new_tokens, p.name) for q, p in paths.items()}
    agree = sum(a == b for a, b in zip(want, got["f16"], strict=True))
    check = {"prompts": len(prompts), "agree": agree, "q8_0_agree": sum(a == b for a, b in zip(want, got["q8_0"], strict=True)),
             "merged": want, "f16": got["f16"]}
    (out / "gguf_check.json").write_text(json.dumps(check, indent=2, ensure_ascii=False), encoding="utf-8")
    if agree < len(prompts):
        raise SynthtuneError(f"the f16 GGUF gave other greedy answers than the merged model on {len(prompts) - agree} of {len(prompts)} "
                             f"prompts (see {out / 'gguf_check.json'}); do not ship it")
    return check
