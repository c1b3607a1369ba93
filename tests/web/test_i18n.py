"""Japanese: every message translated, the catalogue compiled, pages switchable."""

import re
from pathlib import Path

import polib
import pytest
from django.utils import translation

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "locale" / "ja" / "LC_MESSAGES" / "django.po"


def catalogue():
    return [entry for entry in polib.pofile(str(PO)) if not entry.obsolete]


def test_every_message_has_a_japanese_translation():
    untranslated = [
        entry.msgid
        for entry in catalogue()
        if not (entry.msgstr_plural and all(entry.msgstr_plural.values()))
        and not entry.msgstr.strip()
    ]
    assert untranslated == []
    assert not [entry.msgid for entry in catalogue() if "fuzzy" in entry.flags]


def test_translations_keep_every_placeholder():
    def placeholders(text):
        return sorted(re.findall(r"%\(\w+\)[sd]", text))

    broken = [
        entry.msgid
        for entry in catalogue()
        if not entry.msgid_plural and placeholders(entry.msgid) != placeholders(entry.msgstr)
    ]
    assert broken == []


def test_the_compiled_catalogue_matches_the_po_file():
    stale = []
    with translation.override("ja"):
        for entry in catalogue():
            if entry.msgid_plural:
                got = translation.ngettext(entry.msgid, entry.msgid_plural, 2)
                wanted = entry.msgstr_plural[0]
            else:
                got, wanted = translation.gettext(entry.msgid), entry.msgstr
            if got != wanted:
                stale.append(entry.msgid)
    assert stale == [], "run manage.py compilemessages and commit django.mo"


def test_every_string_marked_in_the_web_pages_is_in_the_catalogue():
    marked = set()
    for path in [*(ROOT / "templates").rglob("*.html"), *(ROOT / "web").rglob("*.py")]:
        text = path.read_text()
        marked |= set(re.findall(r'{% translate "([^"]+)" %}', text))
        marked |= set(re.findall(r'\b_\("([^"]+)"\)', text))
    assert marked - {entry.msgid for entry in catalogue()} == set()


@pytest.mark.django_db
def test_a_page_switches_to_japanese_and_back(client, requester, template_version, team):
    client.force_login(requester)
    url = f"/templates/{template_version.pk}/new/"
    assert "Live check" in client.get(url).content.decode()
    response = client.post("/i18n/setlang/", {"language": "ja", "next": url})
    assert response.status_code == 302
    page = client.get(url).content.decode()
    assert '<html lang="ja">' in page
    assert "ライブチェック" in page and "リクエストを送信" in page
    assert "赤" in page  # the choice's Japanese label; the caption still gets "red"
    client.post("/i18n/setlang/", {"language": "en", "next": url})
    assert "Submit request" in client.get(url).content.decode()


@pytest.mark.django_db
def test_refusals_are_headlined_in_japanese(client, requester, output):
    from governance.roles import Role, role_grant

    role_grant(user=requester, role=Role.REVIEWER, granted_by=None)
    client.force_login(requester)
    client.post("/i18n/setlang/", {"language": "ja", "next": "/"})
    page = client.post(f"/review/{output.pk}/", {"action": "reject", "comment": "x"})
    assert "職務分掌" in page.content.decode()
