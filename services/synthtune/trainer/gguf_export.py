"""A merged Hugging Face model folder -> GGUF (f16 or q8_0) for llama.cpp and Ollama, with the `gguf` package's writer.

Supported: LlamaForCausalLM (Llama, SmolLM), MistralForCausalLM (written as llama, as llama.cpp does) and
Qwen2ForCausalLM, with a GPT-2-style BPE tokenizer (tokenizer.json) or a byte-fallback (SentencePiece-like) one.
An architecture the writer does not know is bad input (exit 2), named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from synthtune.errors import InvalidInput

ARCHITECTURES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
FORMATS = ("f16", "q8_0")


def architecture(config: dict[str, Any], folder: Path) -> str:
    """The GGUF architecture for this model; bad input naming it when the writer does not know it."""
    names = config.get("architectures") or [config.get("model_type", "unknown")]
    for name in names:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    raise InvalidInput(f"{folder / 'config.json'}: the GGUF writer does not know the architecture {', '.join(map(str, names))} "
                       f"(known: {', '.join(ARCHITECTURES)}); export it as --format merged or peft instead")


def _pre_tokenizer(arch: str, config: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer (its regex), which it cannot infer from the token list."""
    if arch == "qwen2":
        return "qwen2"
    return {49152: "smollm", 128256: "llama-bpe"}.get(int(config.get("vocab_size", 0)), "default")


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k rows (HF stores the two rotary halves apart); transformers undoes it on load."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add_vocab(writer: Any, folder: Path, arch: str, config: dict[str, Any]) -> None:
    import gguf
    from gguf.vocab import BpeVocab, LlamaHfVocab, SpecialVocab

    try:
        vocab: Any = BpeVocab(folder)
    except FileNotFoundError:
        try:
            vocab = LlamaHfVocab(folder)
        except (FileNotFoundError, TypeError, ValueError) as exc:
            raise InvalidInput(f"{folder}: no tokenizer the GGUF writer can read (tokenizer.json with a BPE model): {exc}") from None
    tokens, scores, types = [], [], []
    for text, score, kind in vocab.all_tokens():
        tokens.append(text)
        scores.append(score)
        types.append(kind)
    n_vocab = int(config.get("vocab_size", len(tokens)))
    for i in range(len(tokens), n_vocab):  # embedding rows beyond the tokenizer (padding): unused tokens
        tokens.append(f"[PAD{i}]".encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model(vocab.tokenizer_model)
    writer.add_tokenizer_pre(_pre_tokenizer(arch, config))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if vocab.tokenizer_model == "llama":
        writer.add_token_scores(scores)
    SpecialVocab(folder, load_merges=vocab.tokenizer_model == "gpt2", n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)


def _add_hparams(writer: Any, arch: str, config: dict[str, Any], name: str, qtype: str) -> None:
    import gguf

    heads = int(config["num_attention_heads"])
    writer.add_name(name)
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or heads))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta") or 10000.0
    writer.add_rope_freq_base(float(theta))
    if arch == "llama":
        writer.add_rope_dimension_count(int(config.get("head_dim") or int(config["hidden_size"]) // heads))
        writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)


def _tensors(folder: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    out: dict[str, np.ndarray] = {}
    for path in sorted(folder.glob("*.safetensors")):
        try:
            out.update(load_file(str(path)))
        except TypeError:  # bfloat16 has no numpy dtype: read through torch
            from safetensors.torch import load_file as load_torch

            out.update({k: v.float().numpy() for k, v in load_torch(str(path)).items()})
    if not out:
        raise InvalidInput(f"{folder}: no *.safetensors weights to convert")
    return out


def write_gguf(folder: Path, out: Path, qtype: str, name: str) -> Path:
    """Write ``out`` (a .gguf file) from the merged model in ``folder``; ``qtype`` is f16 or q8_0."""
    import gguf

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    arch = architecture(config, folder)
    heads, kv_heads = int(config["num_attention_heads"]), int(config.get("num_key_value_heads") or config["num_attention_heads"])
    blocks = int(config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA if arch == "llama" else gguf.MODEL_ARCH.QWEN2, blocks)
    writer = gguf.GGUFWriter(str(out), arch)
    _add_hparams(writer, arch, config, name, qtype)
    _add_vocab(writer, folder, arch, config)
    for key, value in _tensors(folder).items():
        if key.endswith("rotary_emb.inv_freq"):
            continue
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise InvalidInput(f"{folder}: tensor {key} has no GGUF name for the {arch} architecture")
        data = value.astype(np.float32)
        if arch == "llama" and key.endswith("self_attn.q_proj.weight"):
            data = _permute(data, heads)
        elif arch == "llama" and key.endswith("self_attn.k_proj.weight"):
            data = _permute(data, kv_heads)
        if data.ndim == 1:  # norms and biases stay f32, as llama.cpp keeps them
            writer.add_tensor(target, data)
        elif qtype == "q8_0" and data.shape[-1] % 32 == 0:
            writer.add_tensor(target, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(target, data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
