"""Replies cut off at max_tokens: rejected by default, trimmed to a full sentence when kept."""

from synthtune.generator.methods.base import trim_to_sentence


def test_trim_to_sentence():
    assert trim_to_sentence("Check the seal. Replace the O-ring and then tor") == "Check the seal."
    assert trim_to_sentence("1. Stop the line\\n2. Lock out the isolator\\n3. Open the gu".replace("\\n", "\n")) == "1. Stop the line\n2. Lock out the isolator"
    assert trim_to_sentence("no sentence end at all") == ""
    assert trim_to_sentence("Complete sentence.") == "Complete sentence."
