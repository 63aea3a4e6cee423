"""Metrics equal the reference libraries; the judge's order swap and tie logic."""

from __future__ import annotations

import pytest

from synthtune.evaluator import metrics as M
from synthtune.evaluator.judge import combine, judge_pairs, parse_verdict, tally
from synthtune.llm.chat import ChatResult

PREDS = ["Replace the valve seat and the O-ring on head 7, then check fill weight.",
         "Clean the photo-eye lens and realign it to the reflector.",
         "check check check check check check check check check check check check check check"]
REFS = ["Cause: valve seat worn. Fix: replaced valve seat and O-ring on head 7.",
        "Cause: photo-eye misaligned. Fix: cleaned lens and realigned photo-eye.",
        "Cause: chain worn. Fix: replaced chain."]


def test_rouge_equals_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    ours = M.rouge(PREDS, REFS)
    for i, (p, r) in enumerate(zip(PREDS, REFS, strict=True)):
        ref = scorer.score(r, p)
        for k in ("rouge1", "rouge2", "rougeL"):
            assert ours[k][i] == pytest.approx(ref[k].fmeasure, abs=1e-12)


def test_bleu_equals_sacrebleu_on_a_0_1_scale():
    import sacrebleu

    assert M.bleu_corpus(PREDS, REFS) == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score / 100)
    assert 0 <= M.bleu_corpus(PREDS, REFS) <= 1


def test_meteor_equals_nltk_with_debian_wordnet():
    from synthtune.evaluator.wordnet import ensure_wordnet

    ensure_wordnet()
    from nltk.translate.meteor_score import meteor_score

    ours = M.meteor(PREDS, REFS)
    assert ours == [pytest.approx(meteor_score([r.split()], p.split())) for p, r in zip(PREDS, REFS, strict=True)]
    assert ours[0] > ours[2]


def test_lexnames_has_45_entries_with_categories():
    from synthtune.evaluator.wordnet import lexnames_text

    lines = lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3" and lines[26] == "26\tnoun.state\t1" and lines[44] == "44\tadj.ppl\t3"


def test_semantic_similarity_uses_the_shipped_minilm():
    scores = M.semantic(PREDS[:2], REFS[:2] )
    unrelated = M.semantic(["The weather in Paris is sunny."], [REFS[0]])
    assert all(0.4 < s <= 1 for s in scores) and unrelated[0] < min(scores)


def test_health_flags_loops_and_truncation():
    h = M.health(PREDS, ["stop", "stop", "length"])
    assert h["loop_rate"] == pytest.approx(1 / 3) and h["truncated_rate"] == pytest.approx(1 / 3) and h["empty_rate"] == 0


def test_function_call_accuracy():
    """The generator's OpenAI tool-call shape (more shapes in test_function_calls.py)."""
    preds = ['Jammed.\n{"tool_calls": [{"type": "function", "function": {"name": "STOP_CAPPER", "arguments": "{}"}}]}', "no call here"]
    expected = [{"name": "STOP_CAPPER", "arguments": {}}] * 2
    assert M.function_call_accuracy(preds, expected) == {"function_call_rate": 0.5, "function_name_accuracy": 0.5,
                                                         "function_args_accuracy": 0.5}


@pytest.mark.parametrize(("first", "second", "outcome"), [
    ("A", "B", "win"), ("B", "A", "loss"), ("A", "A", "tie"), ("B", "B", "tie"), ("TIE", "TIE", "tie"),
    ("A", "TIE", "tie"), (None, "B", "invalid"),
])
def test_combine_both_orders(first, second, outcome):
    assert combine(first, second) == outcome


class PositionalJudge:
    """Always prefers answer A: a biased judge must produce ties, never wins."""

    model = "fake"

    def __init__(self, reply: str = "A") -> None:
        self.reply = reply
        self.seen: list[str] = []

    def complete(self, requests, progress=None):
        self.seen += [r.messages[1]["content"] for r in requests]
        return [ChatResult(text=self.reply) for _ in requests]

    def close(self):
        pass


class ContentJudge(PositionalJudge):
    """Prefers whichever answer mentions the valve seat, in any order."""

    def complete(self, requests, progress=None):
        out = []
        for r in requests:
            body = r.messages[1]["content"]
            a = body.split("Answer A:\n", 1)[1].split("\n\nAnswer B:", 1)[0]
            out.append(ChatResult(text="A" if "valve seat" in a else "B"))
        return out


ITEMS = [{"question": "Head 7 underfills?", "reference": REFS[0], "tuned": PREDS[0], "base": "Try restarting it."}]


def test_positional_bias_becomes_a_tie_and_names_are_blind():
    judge = PositionalJudge()
    assert judge_pairs(judge, ITEMS) == ["tie"]
    assert all("tuned" not in s and "base" not in s for s in judge.seen)


def test_content_judge_wins_in_both_orders():
    assert tally(judge_pairs(ContentJudge(), ITEMS)) == {"wins": 1, "losses": 0, "ties": 0, "invalid": 0, "win_rate": 1.0}


def test_off_format_judge_is_invalid_not_a_win():
    assert parse_verdict("I think both are fine") is None
    result = tally(judge_pairs(PositionalJudge("Both answers are good."), ITEMS))
    assert result["invalid"] == 1 and result["wins"] == 0 and result["win_rate"] is None
