"""WordNet for METEOR without downloads: Debian's wordnet-base, laid out the way nltk expects."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from synthtune.errors import PermanentError

DEBIAN_DIR = Path("/usr/share/wordnet")
# lexnames(5): file number, lexicographer file name, syntactic category (1 noun, 2 verb, 3 adj, 4 adv).
LEXNAMES = [
    "adj.all 3", "adj.pert 3", "adv.all 4", "noun.Tops 1", "noun.act 1", "noun.animal 1", "noun.artifact 1",
    "noun.attribute 1", "noun.body 1", "noun.cognition 1", "noun.communication 1", "noun.event 1", "noun.feeling 1",
    "noun.food 1", "noun.group 1", "noun.location 1", "noun.motive 1", "noun.object 1", "noun.person 1",
    "noun.phenomenon 1", "noun.plant 1", "noun.possession 1", "noun.process 1", "noun.quantity 1", "noun.relation 1",
    "noun.shape 1", "noun.state 1", "noun.substance 1", "noun.time 1", "verb.body 2", "verb.change 2",
    "verb.cognition 2", "verb.communication 2", "verb.competition 2", "verb.consumption 2", "verb.contact 2",
    "verb.creation 2", "verb.emotion 2", "verb.motion 2", "verb.perception 2", "verb.possession 2", "verb.social 2",
    "verb.stative 2", "verb.weather 2", "adj.ppl 3",
]


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name.split()[0]}\t{name.split()[1]}\n" for i, name in enumerate(LEXNAMES))


def nltk_data_dir() -> Path:
    cache = Path(os.environ.get("SYNTHTUNE_MODEL_CACHE", Path.home() / ".cache" / "synthtune" / "models"))
    return cache.parent / "nltk_data"


def ensure_wordnet() -> Path:
    """An nltk_data folder holding corpora/wordnet, built once from /usr/share/wordnet; sets NLTK_DATA."""
    root = nltk_data_dir()
    target = root / "corpora" / "wordnet"
    if not (target / "lexnames").is_file():
        if not (DEBIAN_DIR / "data.noun").is_file():
            raise PermanentError(
                "METEOR needs WordNet: install Debian's wordnet-base and wordnet-sense-index "
                "(scripts/install_system_deps.sh does it), or drop meteor from evaluate.metrics"
            )
        tmp = root / "corpora" / ".wordnet.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(DEBIAN_DIR, tmp)
        (tmp / "lexnames").write_text(lexnames_text())
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    os.environ["NLTK_DATA"] = str(root)
    import nltk

    if str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))
    return root
