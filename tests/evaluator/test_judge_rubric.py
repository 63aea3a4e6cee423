"""Rubric scores (1-10, single answer) and the pairwise judge, through the stage, with a deterministic judge."""

from __future__ import annotations

import pytest
from eval_fixtures import FakeAnswers, make_adapter, make_prepared, pipeline, read_evaluation, ticket

from synthtune.evaluator.judge import RUBRIC_SYSTEM, rubric_score, rubric_scores, summarize_scores
from synthtune.llm.chat import ChatResult
from synthtune.progress import Progress


@pytest.mark.parametrize(("reply", "score"), [
    ("7", 7), ("10", 10), ("Score: 9/10", 9), (" 3.\nIt misses the torque check.", 3), ("8/10", 8),
    ("0", None), ("11", None), ("7.5", None), ("seven", None), ("I'd give it 7", None), ("", None), ("10/10 great", None),
])
def test_parse_score_accepts_only_a_number_from_1_to_10(reply, score):
    assert rubric_score(reply) == score


class DeterministicJudge:
    """Scores by content, never by position or name: 9 for an answer naming the chuck, 2 otherwise,
    off-format ("Looks fine to me") for answers containing RAMBLE. Pairwise: prefers the chuck."""

    model = "deterministic"

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.closed = False

    def complete(self, requests, progress=None):  # type: ignore[no-untyped-def]
        out = []
        for r in requests:
            body = r.messages[1]["content"]
            self.prompts.append(body)
            if r.messages[0]["content"] == RUBRIC_SYSTEM:
                answer = body.split("Answer to grade:\n", 1)[1]
                out.append(ChatResult(text="Looks fine to me" if "RAMBLE" in answer else ("9" if "chuck" in answer else "2")))
            else:
                a = body.split("Answer A:\n", 1)[1].split("\n\nAnswer B:", 1)[0]
                b = body.split("Answer B:\n", 1)[1]
                out.append(ChatResult(text="TIE" if ("chuck" in a) == ("chuck" in b) else ("A" if "chuck" in a else "B")))
        return out

    def close(self):  # type: ignore[no-untyped-def]
        self.closed = True


def test_rubric_scores_are_blind_and_off_format_is_invalid():
    judge = DeterministicJudge()
    items = [{"question": "Caps crooked?", "reference": "Fix: reset the chuck.", "answer": a}
             for a in ("Reset the chuck.", "Restart it.", "RAMBLE on and on")]
    scores = rubric_scores(judge, items)
    assert scores == [9, 2, None]
    assert summarize_scores(scores) == {"mean": 5.5, "n": 2, "invalid": 1}
    assert summarize_scores([None]) == {"mean": None, "n": 0, "invalid": 1}
    assert all("Reference answer:\nFix: reset the chuck." in p for p in judge.prompts)


def test_rubric_and_pairwise_judge_through_the_stage_into_metrics_and_report(file_store, monkeypatch):
    from synthtune.evaluator import answers, run
    from synthtune.evaluator.report import build_report
    from synthtune.spec.graph import ReportInput

    tickets = [ticket(i, f"Caps crooked on head {i}", "Reset the chuck") for i in range(2, 6)]

    def reply(model, messages, temperature, sample):  # type: ignore[no-untyped-def]
        if model == "base":
            return "RAMBLE restart the machine" if "head 2" in messages[-1]["content"] else "Restart the machine."
        return "Fix: reset the chuck."

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(reply))
    judge = DeterministicJudge()
    monkeypatch.setattr("synthtune.llm.chat.make_backend", lambda spec, base_dir=None: judge)
    spec = pipeline(metrics=["rouge"], forgetting_probe=False, judge={"enabled": True, "rubric": True})
    inputs = {"prepared": make_prepared(file_store, tickets), "adapter:record_qa": make_adapter(file_store, "smollm2-135m-instruct")}
    ref = run(spec, inputs, file_store, Progress())
    metrics, _ = read_evaluation(file_store, ref)
    assert metrics["judge_scores"] == {"base": {"mean": 2.0, "n": 3, "invalid": 1}, "tuned:record_qa": {"mean": 9.0, "n": 4, "invalid": 0}}
    assert metrics["judge"]["tuned:record_qa"] == {"wins": 4, "losses": 0, "ties": 0, "invalid": 0, "win_rate": 1.0}
    assert judge.closed
    assert not any(word in p for p in judge.prompts for word in ("tuned", "record_qa", "base"))  # blind to model names

    run = ReportInput(run_id="r1", name="eval-test", status="succeeded", prepared=inputs["prepared"].id, evaluation=ref.id)
    report = build_report(file_store, run, spec)
    assert report["judge_scores"] == metrics["judge_scores"] and report["judge"] == metrics["judge"]


def test_rubric_alone_runs_for_a_base_only_evaluation(file_store, monkeypatch):
    from synthtune.evaluator import answers, run

    monkeypatch.setattr(answers, "generate_answers", FakeAnswers(lambda *a: "Reset the chuck."))
    monkeypatch.setattr("synthtune.llm.chat.make_backend", lambda spec, base_dir=None: DeterministicJudge())
    spec = pipeline(metrics=["rouge"], forgetting_probe=False, judge={"enabled": False, "rubric": True})
    metrics, _ = read_evaluation(file_store, run(spec, {"prepared": make_prepared(file_store, [ticket(2, "Caps crooked", "Reset the chuck")])},
                                                 file_store, Progress()))
    assert metrics["judge_scores"] == {"base": {"mean": 9.0, "n": 1, "invalid": 0}} and "judge" not in metrics
