"""Rows shaped like the generator's output, shared by the trainer tests (a plain module: conftest names clash across folders)."""

from __future__ import annotations

from typing import Any


def generator_row(n: int, question: str, answer: str, sources: list[str] | None = None) -> dict[str, Any]:
    """One line of a synthetic artifact's data.jsonl as the generator writes it (see generator/stage.py)."""
    return {"id": f"record_qa-{n:04d}", "messages": [
        {"role": "system", "content": "You are a maintenance engineer."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer}],
        "provenance": {"source_ids": sources or [f"rec-{n}"], "method": "record_qa", "label": "record_qa", "teacher": "test",
                       "prompt_version": "1", "temperature": 0.0, "seed": 1, "variant": 0}}


OVERFIT = [generator_row(i, f"What does fault code F0{i} on the capper mean?",
                         f"F0{i} means the chuck clutch on head {i} slips; replace the clutch plates.") for i in range(1, 7)]
