"""Language names to ISO 639-1 codes, and detection (langdetect, seeded so it is deterministic)."""

from __future__ import annotations

import threading

from synthtune.errors import InvalidInput

NAMES = {
    "english": "en", "german": "de", "deutsch": "de", "italian": "it", "italiano": "it", "french": "fr",
    "français": "fr", "spanish": "es", "español": "es", "portuguese": "pt", "dutch": "nl", "polish": "pl",
    "swedish": "sv", "danish": "da", "norwegian": "no", "finnish": "fi", "czech": "cs", "turkish": "tr",
    "russian": "ru", "ukrainian": "uk", "chinese": "zh-cn", "japanese": "ja", "korean": "ko", "arabic": "ar",
    "hindi": "hi", "indonesian": "id", "vietnamese": "vi", "romanian": "ro", "hungarian": "hu", "greek": "el",
}
MIN_CHARS = 40  # detection on shorter text is a coin toss
_lock = threading.Lock()


def language_code(name: str) -> str:
    """'German' or 'de' -> 'de'; unknown names are refused so a typo never disables the check."""
    key = name.strip().lower()
    if key in NAMES:
        return NAMES[key]
    if key in NAMES.values() or (len(key) == 2 and key.isalpha()):
        return key
    raise InvalidInput(f"unknown language {name!r}: use an ISO 639-1 code such as 'de' or one of: {', '.join(sorted(NAMES))}")


def detect_language(text: str) -> tuple[str, float] | None:
    """(code, probability) of the most likely language, or None when the text is too short to tell."""
    if len(text.strip()) < MIN_CHARS:
        return None
    from langdetect import DetectorFactory, detect_langs
    from langdetect.lang_detect_exception import LangDetectException

    with _lock:  # langdetect's factory is global state
        DetectorFactory.seed = 0
        try:
            best = detect_langs(text)[0]
        except LangDetectException:
            return None
    return best.lang, float(best.prob)


def is_language(text: str, code: str, min_prob: float = 0.5) -> bool:
    """False only when the text is confidently in another language."""
    found = detect_language(text)
    if found is None:
        return True
    lang, prob = found
    return lang.split("-")[0] == code.split("-")[0] or prob < min_prob
