"""Two runs of one pipeline train the same adapter at once: one trains, the other waits for its artifact.

Without the claim both trained into ``work/train/<adapter id>/``: each cleared the other's result and
checkpoints (a Ray run then found no result and failed) and the compute was spent twice."""

from __future__ import annotations

import threading

from trainer_helpers import OVERFIT

from synthtune.progress import Progress
from synthtune.spec import load_spec_text


def test_two_identical_train_stages_at_once_train_once_and_share_the_adapter(file_store, tiny_model, monkeypatch):
    import synthtune.trainer.loop as loop
    from synthtune.trainer import run

    trained: list[str] = []
    real_worker = loop.train_worker

    def counting_worker(job, *args, **kwargs):  # type: ignore[no-untyped-def]
        trained.append(job.artifact_id)
        return real_worker(job, *args, **kwargs)

    monkeypatch.setattr(loop, "train_worker", counting_worker)
    with file_store.create("synthetic", [], {"rows": OVERFIT}, "test") as w:
        w.write_jsonl("data.jsonl", OVERFIT)
        synthetic = w.commit()
    spec = load_spec_text("version: 1\nname: t\nsource: {paths: [a.csv]}\n"
                          f"train: {{base_model: {tiny_model}, method: lora, max_steps: 4, batch_size: 2, warmup_steps: 0, "
                          "max_seq_len: 96, lora: {target_modules: [q_proj, v_proj]}, scaling: {use_ray: false}}\n")
    barrier = threading.Barrier(2)
    refs: dict[int, object] = {}
    errors: dict[int, BaseException] = {}

    def go(n: int) -> None:
        barrier.wait()
        try:
            refs[n] = run(spec, {"synthetic": synthetic}, file_store, Progress(f"train-{n}"), method="record_qa")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors[n] = exc

    threads = [threading.Thread(target=go, args=(n,), daemon=True) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and set(refs) == {0, 1}, errors
    assert refs[0] == refs[1]
    assert len(trained) == 1, trained  # one trainer; the other run reused its adapter
    file_store.open(refs[0]).download()  # every file verifies against the manifest
    assert not list(file_store.list_keys("work/train/"))  # no claim, checkpoint or result left behind
