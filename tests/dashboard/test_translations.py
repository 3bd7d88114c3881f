"""The Simplified Chinese catalogue: complete, compiled, and used by pages and emails."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

from django.conf import settings
from django.utils import translation

PO = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
MO = PO.with_suffix(".mo")


def _entries() -> list[dict]:
    """msgctxt, msgid, msgstr and flags of every entry; enough of the .po format for this check."""
    entries, current, field = [], None, None
    for line in PO.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip():
            if current and current["msgid"]:
                entries.append(current)
            current = None
            continue
        current = current or {"msgid": "", "msgstr": "", "flags": "", "msgctxt": ""}
        if line.startswith("msgctxt "):
            field = "msgctxt"
            current[field] += ast.literal_eval(line.split(" ", 1)[1])
        elif line.startswith("#,"):
            current["flags"] += line
        elif line.startswith(("msgid ", "msgstr ", "msgstr[0] ")):
            field = "msgid" if line.startswith("msgid ") else "msgstr"
            current[field] += ast.literal_eval(line.split(" ", 1)[1])  # a quoted C string
        elif line.startswith('"') and field:
            current[field] += ast.literal_eval(line)
        elif line.startswith("msgid_plural"):
            field = None
    return entries


def test_every_message_has_a_chinese_translation():
    entries = _entries()
    assert len(entries) > 400
    assert [e["msgid"] for e in entries if not e["msgstr"]] == []
    assert [e["msgid"] for e in entries if "fuzzy" in e["flags"]] == []


def test_translations_keep_their_placeholders():
    for entry in _entries():
        names = sorted(re.findall(r"%\((\w+)\)[sd]", entry["msgid"]))
        assert sorted(re.findall(r"%\((\w+)\)[sd]", entry["msgstr"])) == names, entry["msgid"]


def test_the_compiled_catalogue_matches_the_po_file():
    with MO.open("rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    for entry in _entries():
        key = f"{entry['msgctxt']}\x04{entry['msgid']}" if entry["msgctxt"] else entry["msgid"]
        assert (catalog.get(key) or catalog.get((key, 0))) == entry["msgstr"], key


def test_django_uses_it():
    with translation.override("zh-hans"):
        assert translation.gettext("Overview") == "概览"
        assert translation.gettext("Save budget") == "保存预算"
