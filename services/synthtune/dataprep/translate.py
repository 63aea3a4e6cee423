"""Translation of record fields with the teacher; a record whose translation fails is rejected."""

from __future__ import annotations

from typing import Any

from synthtune.dataprep.rejects import Rejects
from synthtune.errors import PermanentError
from synthtune.llm.chat import ChatBackend, ChatRequest, ChatResult
from synthtune.llm.language import is_language, language_code
from synthtune.progress import Progress
from synthtune.spec.prepare import TranslateSpec


def system_prompt(spec: TranslateSpec) -> str:
    origin = f" from {spec.source_language}" if spec.source_language else ""
    return (
        f"You translate industrial maintenance records{origin} into {spec.target_language}. "
        "Keep part numbers, codes, units, numbers and placeholders in square brackets such as [NAME] exactly as they are. "
        "Add nothing, explain nothing: reply with the translation only."
    )


def _texts(record: dict[str, Any], names: list[str]) -> dict[str, str]:
    """The record's translatable texts by field name; ``text`` names a chunk's or episode's text."""
    out = {}
    for name in names:
        value = record.get("text") if name == "text" else (record.get("fields") or {}).get(name)
        if isinstance(value, str) and value.strip():
            out[name] = value
    return out


def _outcome(result: ChatResult, spec: TranslateSpec, code: str) -> tuple[str | None, str | None]:
    """(translation, None) or (None, why it failed)."""
    if not result.ok:
        return None, result.error or "the teacher returned an error"
    if result.finish_reason == "length":
        return None, "the translation was cut off at max_tokens"
    text = result.text.strip()
    if not text:
        return None, "the teacher returned an empty translation"
    if not is_language(text, code):  # only text long enough to tell, confidently in another language
        return None, f"the translation is not in {spec.target_language}"
    return text, None


def translate_records(
    records: list[dict[str, Any]], spec: TranslateSpec, backend: ChatBackend, rejects: Rejects, progress: Progress
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Translate each distinct text once; returns the kept records and request counts for the stats."""
    unique: dict[str, int] = {}
    for record in records:
        for text in _texts(record, spec.fields).values():
            unique.setdefault(text, len(unique))
    texts = list(unique)
    code = language_code(spec.target_language)  # an unknown language is refused before any request
    system = system_prompt(spec)
    outcomes: list[tuple[str | None, str | None]] = []
    progress.start(len(texts), f"translating into {spec.target_language}")
    usage = {"requests": len(texts), "failed": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for start in range(0, len(texts), spec.batch_size):
        progress.check_cancelled()
        batch = texts[start:start + spec.batch_size]
        requests = [
            ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": t}], temperature=0.0, key=str(start + j))
            for j, t in enumerate(batch)
        ]
        results = backend.complete(requests, progress.child("translate"))
        if len(results) != len(requests):
            raise PermanentError(f"teacher backend returned {len(results)} results for {len(requests)} requests")
        for result in results:
            outcomes.append(_outcome(result, spec, code))
            usage["prompt_tokens"] += result.prompt_tokens
            usage["completion_tokens"] += result.completion_tokens
        progress.advance(len(batch))
    kept = []
    for record in records:
        originals = _texts(record, spec.fields)
        failures = [(name, outcomes[unique[text]][1]) for name, text in originals.items() if outcomes[unique[text]][1]]
        if failures:
            name, why = failures[0]
            rejects.add_record(record, "translate", "translation_failed", f"translation of field {name!r} failed: {why}")
            continue
        for name, text in originals.items():
            translated = outcomes[unique[text]][0]
            if name == "text":
                record["text"] = translated
            else:
                record["fields"][name] = translated
        if originals:
            record["original"] = originals
        kept.append(record)
    usage["failed"] = sum(1 for _, err in outcomes if err)
    return kept, usage
