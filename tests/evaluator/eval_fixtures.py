"""Evaluator test helpers: prepared/adapter artifacts, pipeline specs, records of each kind, fake answerers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthtune.progress import Progress


def ticket(n: int, problem: str, solution: str | None, machine: str = "capper", cause: str = "") -> dict[str, Any]:
    fields = {"problem": problem, "machine": machine, **({"cause": cause} if cause else {}), **({"solution": solution} if solution else {})}
    return {"id": f"wo.csv:{n}", "type": "record", "fields": fields, "text": "", "source": {"file": "wo.csv", "row": n}}


def chunk(n: int, text: str) -> dict[str, Any]:
    return {"id": f"manual.md:{n}", "type": "chunk", "fields": {}, "text": text, "source": {"file": "manual.md", "page": n}}


def episode(n: int, events: list[tuple[str, Any, str | None]], machine: str = "capper") -> dict[str, Any]:
    """An episode as dataprep writes it: ISO times, the rendered text shows every command."""
    evs = [{"t": f"2025-03-03T06:00:{i * 4:02d}Z", "signal": s, "value": v, "command": c} for i, (s, v, c) in enumerate(events)]
    text = "\n".join(f"+{i * 4:.1f}s {e['signal']} = {e['value']}" + (f" [command: {e['command']}]" if e["command"] else "")
                     for i, e in enumerate(evs))
    return {"id": f"line.csv:{n}", "type": "episode", "fields": {"machine": machine}, "text": text, "events": evs,
            "source": {"file": "line.csv", "row": n}}


def make_prepared(store, test: list[dict[str, Any]], train: list[dict[str, Any]] = ()):  # type: ignore[no-untyped-def]
    with store.create("prepared", [], {"fixture": uuid.uuid4().hex}, producer="tests") as w:
        w.write_jsonl("train.jsonl", list(train))
        w.write_jsonl("validation.jsonl", [])
        w.write_jsonl("test.jsonl", test)
        w.write_jsonl("rejects.jsonl", [])
        w.write_json("stats.json", {"splits": {"train": len(train), "validation": 0, "test": len(test)}})
        return w.commit()


def make_adapter(store, base_model: str, folder: Path | None = None, method: str = "lora"):  # type: ignore[no-untyped-def]
    """An `adapter` artifact: the files of ``folder`` (a PEFT adapter or a full model) and a training log."""
    with store.create("adapter", [], {"fixture": uuid.uuid4().hex}, producer="tests") as w:
        if folder is not None:
            for path in sorted(Path(folder).iterdir()):
                if path.is_file():
                    w.path(path.name).write_bytes(path.read_bytes())
        else:
            w.write_json("adapter_config.json", {"r": 8})
        w.write_json("training_log.json", {"base_model": base_model, "method": method, "train_loss": [1.0], "eval_loss": []})
        return w.commit()


def pipeline(base_model: str = "smollm2-135m-instruct", methods: list[dict[str, Any]] | None = None, **evaluate: Any):  # type: ignore[no-untyped-def]
    from synthtune.spec import PipelineSpec

    return PipelineSpec.model_validate({
        "version": 1, "name": "eval-test", "source": {"paths": ["x.csv"]},
        "generate": {"methods": methods or [{"name": "record_qa"}]},
        "train": {"base_model": base_model}, "evaluate": {"bootstrap": 50, **evaluate},
    })


Reply = Callable[[str, list[dict[str, Any]], float, int], str]


class FakeAnswers:
    """Stands in for answers.generate_answers: ``reply(model, messages, temperature, sample)`` per prompt and sample."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.calls: list[dict[str, Any]] = []

    def __call__(self, spec, model_path, adapters, prompts, temperature, samples, progress):  # type: ignore[no-untyped-def]
        names = ["base", *[f"tuned:{k}" for k in adapters]]
        self.calls.append({"temperature": temperature, "samples": samples, "prompts": prompts, "names": names})
        out = {}
        for name in names:
            out[name] = [[(self.reply(name, p.messages, temperature, s), "stop") for s in range(samples)] for p in prompts]
            progress.advance(len(prompts) * samples)
        return out


class RecordingProgress(Progress):
    def __init__(self) -> None:
        super().__init__("evaluate")
        self.starts: list[float | None] = []

    def start(self, total: float | None, description: str) -> None:
        self.starts.append(total)
        super().start(total, description)


def user_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")


def save_tiny_model(folder: Path, seed: int) -> str:
    """The tests' one tiny Llama (tests/tiny_models.py) with weights drawn from ``seed``."""
    from tiny_models import save_tiny_llama

    return save_tiny_llama(folder, seed)


def read_evaluation(store, ref) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # type: ignore[no-untyped-def]
    art = store.open(ref)
    return art.read_json("metrics.json"), list(art.iter_jsonl("predictions.jsonl"))


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)
