"""Cleaning: whitespace, shouting to sentence case, abbreviations (checked against MaintNorm), redaction."""

from __future__ import annotations

import pytest

from synthtune.dataprep.abbreviations import load_abbreviations
from synthtune.dataprep.cleaning import Cleaner, is_shouting, normalize_whitespace, sentence_case
from synthtune.dataprep.redact import Redactor, load_names
from synthtune.errors import InvalidInput
from synthtune.spec.prepare import RedactSpec


def cleaner(abbreviations=True, base_dir=None):  # type: ignore[no-untyped-def]
    return Cleaner(load_abbreviations(abbreviations, base_dir), True, ["problem", "solution"])


def test_whitespace_and_invisible_characters():
    assert normalize_whitespace("  Leak\u00a0at\t\tboom \u200b\r\n\r\n\r\n\r\nFixed  ") == "Leak at boom\n\nFixed"
    assert normalize_whitespace("Cafe\u0301") == "Café"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("L/H BUCKET CYL LEAKING.", "Left hand bucket cylinder leaking."),
        ("REPL DAMAGED TYRE POS 7 & CHECK HYD HOSES", "Replace damaged tyre position 7 and check hydraulic hoses"),
        ("250HR SERVICE ON PM01 UNIT - NDT INSPECT", "250 hour service on PM01 unit - NDT inspect"),
        ("C/O ENG. R/H/S A/C U/S", "Change out engine. Right hand side air conditioner unserviceable"),
        ("Replace hyd hoses to tow hitch", "Replace hydraulic hoses to tow hitch"),
        ("Check D11R track tension", "Check D11R track tension"),
        ("CALL [NAME] RE: LEAK", "Call [NAME] re: leak"),
    ],
)
def test_shorthand_becomes_readable_text(raw, clean):
    assert cleaner().clean_text(raw) == clean


def test_case_rules():
    assert is_shouting("BUCKET WON'T OPEN") and not is_shouting("Bucket won't open") and not is_shouting("PM01")
    assert sentence_case("LEAK AT BOOM. CHECK ECU CODE E42! OK", frozenset({"ECU", "OK"})) == "Leak at boom. Check ECU code E42! OK"


def test_expansion_matches_maintnorm_gold_normalisation(shared_datasets):
    """The shipped list agrees with MaintNorm's human normalisation on the tokens it covers."""
    table = load_abbreviations(True)
    agree = total = 0
    covered = set()
    for line in (shared_datasets / "maintnorm_train.norm").read_text(encoding="utf-8").splitlines():
        raw, tab, gold = line.partition("\t")
        if not tab or raw.casefold() not in table.table:
            continue
        total += 1
        covered.add(raw.casefold())
        agree += table.expand(raw).casefold() == gold.casefold()
    assert total > 4000 and len(covered) >= 40
    assert agree / total >= 0.97


def test_custom_abbreviation_file_and_switching_off(tmp_path):
    (tmp_path / "abbr.yaml").write_text(
        "abbreviations:\n  GBX: gearbox\npatterns:\n  - match: '\\bSN(\\d+)'\n    replace: 'serial \\1'\nkeep_upper: [GBX]\n"
    )
    custom = cleaner("abbr.yaml", str(tmp_path))
    assert custom.clean_text("GBX NOISY ON SN123, CYL OK") == "Gearbox noisy on serial 123, cyl ok"
    assert cleaner(False).clean_text("L/H CYL LEAKING") == "L/h cyl leaking"
    (tmp_path / "bad.yaml").write_text("abbreviations: [GBX]\n")
    with pytest.raises(InvalidInput, match="must map each abbreviation"):
        cleaner("bad.yaml", str(tmp_path))
    with pytest.raises(InvalidInput, match="cannot read"):
        cleaner("missing.yaml", str(tmp_path))


def test_only_text_fields_are_rewritten():
    record = {"fields": {"problem": "HYD LEAK ON L/H CYL", "machine": "CYL PRESS 4", "hours": 2}}
    assert Cleaner(load_abbreviations(True), True, ["problem"]).clean_record(record)
    assert record["fields"] == {"problem": "Hydraulic leak on left hand cylinder", "machine": "CYL PRESS 4", "hours": 2}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail j.rossi@plant-3.example.com now", "mail [EMAIL] now"),
        ("call +39 02 1234 5678 or (555) 123-4567", "call [PHONE] or [PHONE]"),
        ("ring 0049 89 123456 or 0612345678", "ring [PHONE] or [PHONE]"),
        ("on 2024-03-01 cost 407.40 for 1000H service", "on 2024-03-01 cost 407.40 for 1000H service"),
        ("part 4N-1234 serial 123456789 order 45000123", "part 4N-1234 serial 123456789 order 45000123"),
        ("fitted hoses 12 16 20 24 and 555-123-4567", "fitted hoses 12 16 20 24 and [PHONE]"),
        ("done by Mario Rossi and mario rossi's mate", "done by [NAME] and [NAME]'s mate"),
        ("badge EMP-00417 signed", "badge [EMPLOYEE] signed"),
    ],
)
def test_redaction(tmp_path, text, expected):
    (tmp_path / "names.txt").write_text("# technicians\nMario Rossi\n")
    spec = RedactSpec(patterns={"employee": r"EMP-\d{5}"}, names_file="names.txt")
    redactor = Redactor(spec, load_names(spec, str(tmp_path)))
    assert redactor.redact(text) == expected


def test_redaction_counts_and_bad_pattern():
    redactor = Redactor(RedactSpec(names=["Anna"]), ["Anna"])
    record = {"fields": {"problem": "Anna: call +44 20 7946 0958", "solution": None}, "text": ""}
    redactor.redact_record(record)
    assert record["fields"]["problem"] == "[NAME]: call [PHONE]"
    assert dict(redactor.counts) == {"NAME": 1, "PHONE": 1}
    with pytest.raises(InvalidInput, match=r"prepare\.redact\.patterns\.badge: bad regular expression"):
        Redactor(RedactSpec(patterns={"badge": "EMP-(\\d"}), [])
