"""Shared LLM plumbing: model resolution (embedded default, HF ids, paths, GGUF) and chat backends."""
