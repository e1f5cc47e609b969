"""Japanese and English: the portal speaks the browser's language or the one
picked in the header; the Japanese catalogue is complete, checked and compiled;
the same stored diagnosis reads in either language."""

import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import translation

from hakobune.platform.diagnoses import Diagnosis
from hakobune.platform.services import setting_words
from hakobune.runtime.release_config import all_settings

CATALOGUE = Path(settings.LOCALE_PATHS[0]) / "ja" / "LC_MESSAGES"
MSGFMT = shutil.which("msgfmt")
needs_msgfmt = pytest.mark.skipif(MSGFMT is None, reason="Debian's gettext (msgfmt) is not installed; `make deps` installs it")


DOMAINS = ["django", "hakobune-cli"]


@needs_msgfmt
@pytest.mark.parametrize("domain", DOMAINS)
def test_the_japanese_catalogue_has_no_untranslated_or_fuzzy_entry(tmp_path, domain):
    checked = subprocess.run(
        [MSGFMT, "--check", "--statistics", "-o", str(tmp_path / f"{domain}.mo"), str(CATALOGUE / f"{domain}.po")],
        capture_output=True, text=True,
    )
    assert checked.returncode == 0, checked.stderr
    said = checked.stderr.strip()
    assert said.endswith("translated messages."), said
    assert "untranslated" not in said and "fuzzy" not in said, said


@needs_msgfmt
@pytest.mark.parametrize("domain", DOMAINS)
def test_the_committed_compiled_catalogue_is_the_current_one(tmp_path, domain):
    """A fresh clone serves Japanese without gettext: the .mo is committed, and
    must be compiled from the .po as it is now."""
    subprocess.run([MSGFMT, "-o", str(tmp_path / f"{domain}.mo"), str(CATALOGUE / f"{domain}.po")], check=True)
    assert (CATALOGUE / f"{domain}.mo").read_bytes() == (tmp_path / f"{domain}.mo").read_bytes(), (
        f"run: msgfmt -o {CATALOGUE}/{domain}.mo {CATALOGUE}/{domain}.po"
    )


def test_every_declared_settings_words_are_marked_for_translation():
    words = set(setting_words.WORDS)
    for setting in all_settings():
        assert setting.label in words and setting.help in words, setting.name
        for _, label in setting.choices or ():
            assert label in words, (setting.name, label)


@pytest.mark.parametrize("language, heading, button", [
    ("ja", "acme <span class=\"muted\">チーム</span>", "新しいサービス"),
    ("ja-JP,ja;q=0.9,en;q=0.8", "acme <span class=\"muted\">チーム</span>", "新しいサービス"),
    ("en-US,en;q=0.9", "acme <span class=\"muted\">team</span>", "New service"),
    ("fr-FR", "acme <span class=\"muted\">team</span>", "New service"),
])
def test_an_owner_reads_the_dashboard_in_the_browsers_language(login, owner, team, language, heading, button):
    page = login(owner).get("/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
    assert heading in page and button in page
    assert f'<html lang="{"ja" if language.startswith("ja") else "en"}">' in page


def test_the_header_switcher_changes_the_language_and_it_stays(login, owner, team):
    client = login(owner)
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'name="language" value="ja"' in page and "日本語" in page
    switched = client.post("/i18n/setlang/", {"language": "ja", "next": "/"}, HTTP_ACCEPT_LANGUAGE="en")
    assert switched.status_code == 302 and switched["Location"] == "/"
    page = client.get("/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "新しいサービス" in page and 'name="language" value="en"' in page


def test_a_japanese_visitor_logs_in_in_japanese(client):
    page = client.get("/login/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "Hakobune にログイン" in page and "ユーザー名" in page and "Log in to Hakobune" not in page


def test_flash_messages_are_in_the_readers_language(login, owner, team):
    client = login(owner)
    client.post("/i18n/setlang/", {"language": "ja", "next": "/"})
    response = client.post("/teams/new/", {"name": "beta"}, follow=True)
    assert "チーム beta を作成しました。あなたがオーナーです。" in response.content.decode()


def test_one_stored_diagnosis_reads_in_either_language():
    diagnosis = Diagnosis("build.timed_out", {"seconds": 900})
    assert diagnosis.in_english().startswith("The build took longer than 900 s")
    with translation.override("ja"):
        assert diagnosis.in_words().startswith("ビルドが制限時間の 900 秒を超えたため止めました。")
        assert diagnosis.in_english().startswith("The build took longer than 900 s")


def test_the_command_speaks_the_language_of_lang(tmp_path, monkeypatch, capsys):
    from hakobune import cli

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("HAKOBUNE_URL", "HAKOBUNE_TOKEN", "LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    assert cli.main(["whoami"]) == cli.EXIT_USAGE
    assert "ログインしていません。`hakobune login https://your-hakobune` を実行するか" in capsys.readouterr().err
    assert cli.Api("http://127.0.0.1:1").session.headers["Accept-Language"] == "ja"
    monkeypatch.setenv("LANG", "C.UTF-8")
    assert cli.main(["whoami"]) == cli.EXIT_USAGE
    assert "Not logged in. Run `hakobune login" in capsys.readouterr().err
    assert cli.Api("http://127.0.0.1:1").session.headers["Accept-Language"] == "en"
