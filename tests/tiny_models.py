"""The one tiny random-weight model of the tests: a small Llama with SmolLM2's tokenizer and chat template.

Built from a config (no hub), saved as safetensors: loads in a second, trains a step in well under one.
"""

from __future__ import annotations

from pathlib import Path


def save_tiny_llama(folder: Path, seed: int = 0, hidden_size: int = 32, num_key_value_heads: int = 2) -> str:
    """Save the model (weights drawn with ``seed``) and its tokenizer in ``folder``; return the folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from synthtune.llm.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m-instruct"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=num_key_value_heads, max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return str(folder)
