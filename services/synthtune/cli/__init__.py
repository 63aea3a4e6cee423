"""The `synthtune` command."""
