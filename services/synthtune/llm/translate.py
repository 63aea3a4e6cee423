"""Translate texts with any chat backend: the step data preparation calls before cleaning."""

from __future__ import annotations

import re

from synthtune.llm.chat import ChatBackend, ChatRequest, ChatResult
from synthtune.llm.language import is_language, language_code
from synthtune.progress import Progress

SYSTEM = (
    "You are a professional translator of industrial maintenance records. Translate the user's text into "
    "{language}. Keep part numbers, codes, units and abbreviations you cannot expand exactly as they are. "
    "Reply with the translation only: no quotes, no notes, no greeting."
)
_PREFIX = re.compile(r"^\s*(?:here is the translation|translation|translated text)\s*(?:\([^)]*\))?\s*:\s*", re.I)


def clean_translation(text: str) -> str:
    text = _PREFIX.sub("", text.strip())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1]
    return text.strip()


def translate_texts(backend: ChatBackend, texts: list[str], target_language: str, progress: Progress | None = None,
                    max_tokens: int | None = None) -> list[ChatResult]:
    """One result per text, in order: ``.text`` is the translation, ``.error`` says why there is none.

    Empty texts come back empty without a request; replies that are empty, cut off or confidently
    in another language come back with ``error`` set, so the caller can reject that record.
    """
    code = language_code(target_language)
    system = SYSTEM.format(language=target_language)
    todo = [i for i, t in enumerate(texts) if t and t.strip()]
    requests = [
        ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": texts[i]}],
                    temperature=0.0, max_tokens=max_tokens or max(64, 3 * len(texts[i].split()) + 32), key=str(i))
        for i in todo
    ]
    results = [ChatResult(text="") for _ in texts]
    for i, result in zip(todo, backend.complete(requests, progress), strict=True):
        if result.ok:
            result.text = clean_translation(result.text)
            if not result.text:
                result.error = "empty translation"
            elif result.finish_reason == "length":
                result.error = "translation cut off at max_tokens"
            elif not is_language(result.text, code):
                result.error = f"translation is not in {target_language}"
        results[i] = result
    return results
