"""Small text helpers shared by methods and filters: words, n-grams, cleaning, refusal/greeting rules."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)
# Labels models put before the text we asked for; the label is dropped, the text kept.
_LABEL = re.compile(
    r"^\s*\**\s*(?:question|answer|rewritten question|evolved question|technician(?:'s question)?|expert(?:'s answer)?|"
    r"situation|response)\s*\**\s*:\s*\**\s*", re.I)
# A first line of pleasantry ("Sure! Here is the question:") before the real text on the next lines.
_PREAMBLE = re.compile(r"^\s*(?:sure|certainly|of course|okay|ok|absolutely|here(?:'s| is| are))\b[^\n]{0,80}\n", re.I)
REFUSAL = re.compile(
    r"\b(?:i'?m sorry|i apologi[sz]e|as an ai\b|as a language model|i cannot (?:help|assist|provide|answer)|"
    r"i can'?t (?:help|assist|provide|answer)|i am (?:not able|unable) to|i'?m (?:not able|unable) to|"
    r"i do not have (?:enough )?information|i don'?t have (?:enough )?information)", re.I)
GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|dear|greetings|good (?:morning|afternoon|evening)|thanks? (?:you )?for (?:your|the) (?:question|message))\b",
    re.I)
SIGN_OFF = re.compile(r"\n\s*(?:best regards|kind regards|regards|cheers|sincerely)\b[\s\S]{0,80}$", re.I)

STOPWORDS = frozenset(["a", "an", "the", "and", "or", "but", "if", "then", "else", "of", "to", "in", "on", "at", "by", "for", "with", "from", "into", "onto", "over", "under", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "done", "has", "have", "had", "having", "it", "its", "this", "that", "these", "those", "there", "here", "as", "not", "no", "nor", "so", "too", "very", "can", "could", "should", "would", "may", "might", "must", "will", "shall", "i", "you", "he", "she", "we", "they", "me", "him", "her", "us", "them", "my", "your", "his", "our", "their", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "all", "any", "both", "each", "few", "more", "most", "other", "some", "such", "only", "own", "same", "than", "also", "just", "about", "above", "below", "again", "further", "once", "out", "up", "down", "off", "while", "during", "before", "after", "between", "through", "until", "against", "because", "per", "via"])


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 2]


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def clean_reply(text: str) -> str:
    """The reply without labels, pleasantry preambles, wrapping quotes or sign-offs."""
    text = text.strip()
    for _ in range(2):
        text = _PREAMBLE.sub("", text, count=1).strip()
        text = _LABEL.sub("", text, count=1).strip()
    text = SIGN_OFF.sub("", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    return text


def copies_prompt(reply: str, prompt: str, n: int = 4, share: float = 0.5) -> bool:
    """True when the reply repeats most of the prompt's n-grams (an echo, not an answer)."""
    prompt_grams = ngrams(words(prompt), n)
    if len(prompt_grams) < 4:
        return False
    return len(prompt_grams & ngrams(words(reply), n)) / len(prompt_grams) >= share


def support(answer: str, source: str) -> float:
    """Share of the answer's content words found in the source (a word's 5-letter stem counts)."""
    answer_words = content_words(answer)
    if not answer_words:
        return 0.0
    source_words = set(content_words(source))
    stems = {w[:5] for w in source_words}
    found = sum(1 for w in answer_words if w in source_words or w[:5] in stems)
    return found / len(answer_words)
