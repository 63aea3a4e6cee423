"""Model names resolve to local folders without touching a hub."""

from pathlib import Path

import pytest

from synthtune.errors import InvalidInput, NotFound
from synthtune.llm.models import EMBEDDED_DEFAULT, embedded_gguf_path, resolve_model


def test_embedded_gguf_is_shipped_by_the_package():
    path = embedded_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_embedded_default_resolves_to_a_safetensors_folder():
    folder = Path(resolve_model(EMBEDDED_DEFAULT))
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file()


def test_missing_gguf_file_is_not_found(tmp_path):
    with pytest.raises(NotFound, match="no such GGUF file"):
        resolve_model(str(tmp_path / "nope.gguf"))


def test_folder_without_config_is_invalid(tmp_path):
    with pytest.raises(InvalidInput, match="no config.json"):
        resolve_model(str(tmp_path))


def test_relative_path_resolves_against_base_dir(tmp_path):
    model_dir = tmp_path / "models" / "tiny"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    assert resolve_model("models/tiny", base_dir=str(tmp_path)) == str(model_dir.resolve())


def test_missing_local_path_is_not_found():
    with pytest.raises(NotFound):
        resolve_model("./does/not/exist")


def test_empty_name_is_invalid():
    with pytest.raises(InvalidInput):
        resolve_model("  ")
