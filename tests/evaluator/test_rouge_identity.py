"""Our ROUGE (rouge-score-rs) gives rouge-score's exact scores: real maintenance text, model-like answers, edge cases."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest

from synthtune.evaluator import metrics as M

TYPES = ["rouge1", "rouge2", "rougeL"]
WORDNET = Path("/usr/share/wordnet")

EDGE_CASES = [
    "", " ", "\n\t\r\n", "...", "!!! ??? --- ///", "12345", "0 00 000 0000 00000", "3.5mm 10W-40 2x M12 ISO-4406 16/14/11",
    "a", "ab", "abc", "abcd", "the the the the", "pump pump valve pump",
    "dying lying sky skies news ponies caresses agreed owned humbled sized meeting itemization sensational",
    "generously generalizations conditional traditional reference colonizer plotted siezing",
    "under_score snake_case CamelCase e-mail O-ring L/H R/H", "I'm sorry, I can't help with that.",
    "İstanbul İSTANBUL", "\u212aELVIN \u212a", "straße STRASSE", "café naïve résumé", "Ölfilter wechseln",
    "日本語のテキスト", "émoji 🔧🛠 pump", "ﬁlter ﬂow", "ＦＵＬＬＷＩＤＴＨ ｐｕｍｐ", "Ⅻ ⅻ ² ³ ½", "\ud800 lone \udfff surrogates",
    "x" * 300, "replace the hydraulic pump seal " * 60,
]


def assert_identical(predictions: list[str], references: list[str]) -> None:
    from rouge_score import rouge_scorer
    from rouge_score_rs import RougeScorer

    reference = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
    port = RougeScorer(TYPES, use_stemmer=True)
    ours = M.rouge(predictions, references)
    for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
        want, got = reference.score(r, p), port.score(r, p)
        for k in TYPES:
            assert tuple(got[k]) == tuple(want[k]), (k, p[:80], r[:80])
            assert ours[k][i] == want[k].fmeasure, (k, p[:80], r[:80])


def dataset_texts(datasets: Path) -> dict[str, list[str]]:
    with open(datasets / "excavator_work_orders_labelled.csv", encoding="utf-8", newline="") as f:
        excavator = list(csv.DictReader(f))
    with open(datasets / "mining_truck_fmea.csv", encoding="utf-8", newline="") as f:
        fmea = list(csv.DictReader(f))
    raw, norm = [], []
    for block in (datasets / "maintnorm_train.norm").read_text(encoding="utf-8").split("\n\n"):
        cells = [line.partition("\t") for line in block.splitlines() if line]
        raw.append(" ".join(c[0] for c in cells))
        norm.append(" ".join(c[2] for c in cells))
    return {
        "work_order": [r["OriginalShorttext"] for r in excavator],
        "work_order_labels": [" ".join(r[k] for k in ("MajorSystem", "Part", "Action", "FM", "Location") if r[k]).replace("_", " ")
                              for r in excavator],
        "fmea_action": [r["Recommended Action"] for r in fmea],
        "fmea_cause": [f"{r['Potential Failure Mode']}: {r['Potential Cause(s) of Failure']}. {r['Current Controls']}" for r in fmea],
        "maintie": [d["text"] for d in json.loads((datasets / "maintie_gold.json").read_text(encoding="utf-8"))],
        "maintnorm_raw": raw,
        "maintnorm_norm": norm,
    }


def model_like_answer(rng: random.Random, texts: list[str], steps: int) -> str:
    chosen = rng.sample(texts, steps)
    style = rng.randrange(3)
    if style == 0:
        return "\n".join(f"{i}. {s.capitalize()}." for i, s in enumerate(chosen, 1))
    if style == 1:
        return "**Cause:** " + chosen[0] + "\n**Fix:**\n- " + "\n- ".join(chosen[1:])
    return " ".join(chosen[:2] * rng.randint(2, 6))  # a looping base model


def test_identical_on_pairs_from_the_shared_datasets(shared_datasets: Path) -> None:
    rng = random.Random(7)
    t = dataset_texts(shared_datasets)
    everything = [x for texts in t.values() for x in texts]
    rows = rng.sample(range(len(t["work_order"])), 800)
    preds = [t["work_order"][i] for i in rows]
    refs = [t["work_order_labels"][i] for i in rows]
    rows = rng.sample(range(len(t["maintnorm_raw"])), 800)
    preds += [t["maintnorm_raw"][i] for i in rows]
    refs += [t["maintnorm_norm"][i] for i in rows]
    preds += t["fmea_action"]
    refs += t["fmea_cause"]
    for _ in range(800):  # unrelated, shuffled and near-duplicate texts
        a, b = rng.choice(everything), rng.choice(everything)
        words = a.split()
        rng.shuffle(words)
        p, r = rng.choice([(a, b), (" ".join(words), a), (a.lower() + " " + b, a), (a, a.upper())])
        preds.append(p)
        refs.append(r)
    for _ in range(300):
        preds.append(model_like_answer(rng, everything, rng.randint(3, 15)))
        refs.append(model_like_answer(rng, everything, rng.randint(1, 4)))
    for _ in range(6):
        preds.append(" ".join(rng.choices(everything, k=120)))
        refs.append(" ".join(rng.choices(everything, k=rng.choice([1, 40, 120]))))
    assert len(preds) > 3000
    assert_identical(preds, refs)


def test_identical_on_edge_cases() -> None:
    preds = [p for p in EDGE_CASES for _ in EDGE_CASES]
    refs = [r for _ in EDGE_CASES for r in EDGE_CASES]
    very_long = " ".join(["check the bearing temperatures and replace worn seals"] * 600)
    preds += [very_long, "bearing", "", very_long[:2000]]
    refs += ["seals replaced", very_long, very_long, very_long]
    assert_identical(preds, refs)


def test_same_tokens_and_porter_stems_on_the_wordnet_vocabulary() -> None:
    """Scores rest on the tokens, so the port's own Porter stemmer must match nltk's on ~200k English words."""
    if not WORDNET.is_dir():
        pytest.skip(f"Debian's WordNet not found at {WORDNET}")
    from rouge_score import tokenizers as reference
    from rouge_score_rs import tokenizers as port

    words: set[str] = set()
    for path in [*WORDNET.glob("index.*"), *WORDNET.glob("*.exc")]:
        words.update(re.findall(r"[a-z0-9]+", path.read_text(encoding="latin-1").lower()))
    text = " ".join(sorted(words))
    assert len(words) > 100_000
    assert port.DefaultTokenizer(use_stemmer=True).tokenize(text) == reference.DefaultTokenizer(use_stemmer=True).tokenize(text)
