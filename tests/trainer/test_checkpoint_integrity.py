"""Checkpoint and result files come back from the store only if they hash to what their marker recorded."""

from __future__ import annotations

import pytest

from synthtune.store import IntegrityError, open_store
from synthtune.trainer.checkpoints import StoreCheckpoints


def test_a_tampered_checkpoint_or_result_file_is_refused(tmp_path):
    store = open_store(str(tmp_path / "store"))
    local = tmp_path / "ckpt"
    local.mkdir()
    (local / "rng_state_0.pth").write_bytes(b"pickled rng state")
    (local / "adapter_model.safetensors").write_bytes(b"weights")
    ckpt = StoreCheckpoints(store, "adapter-x")
    ckpt.upload(local, 2)
    marker = store.get_json("work/train/adapter-x/checkpoint-2/COMPLETE")
    assert marker["files"] == ["adapter_model.safetensors", "rng_state_0.pth"] and set(marker["sha256"]) == set(marker["files"])
    assert (ckpt.download(2, tmp_path / "ok") / "rng_state_0.pth").read_bytes() == b"pickled rng state"
    store.backend.put_bytes("work/train/adapter-x/checkpoint-2/rng_state_0.pth", b"a different pickle")  # planted in the store
    with pytest.raises(IntegrityError, match=r"checkpoint-2/rng_state_0\.pth: sha256 mismatch"):
        ckpt.download(2, tmp_path / "bad")
    assert not (tmp_path / "bad" / "checkpoint-2" / "rng_state_0.pth").exists()

    ckpt.publish_result(local)
    store.backend.put_bytes("work/train/adapter-x/result/adapter_model.safetensors", b"swapped")
    with pytest.raises(IntegrityError, match=r"result/adapter_model\.safetensors: sha256 mismatch"):
        ckpt.fetch_result(tmp_path / "result")
