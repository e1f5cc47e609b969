"""The deploy doctor in a real browser, on a phone (390 px wide): a beginner
uploads an app that fails the way beginners' apps fail, and the service page
says why in plain words, where the failure is shown, in English and in
Japanese (the diagnosis is stored as a rule with its values, so one failed
deploy reads in either language). Screenshots are saved as test artifacts."""

import os

import pytest
from playwright.sync_api import expect, sync_playwright

from hakobune.platform.accounts.services import create_team
from tests.conftest import archive_of
from tests.e2e.test_first_deploy_in_the_browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_languages_and_phones import PHONE, check, log_in, visit

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]

# app -> language -> what its failure must say (in Japanese: the values the
# sentence carries, which are the same in every language).
SAID = {
    # It runs, but listens where the router cannot reach it: the address and port it did open.
    "listens-on-localhost": {
        "en": ["listens on 127.0.0.1 port 8080", "0.0.0.0"],
        "ja": ["127.0.0.1", "8080", "0.0.0.0", "$PORT"],
    },
    "listens-on-other-port": {
        "en": ["listens on port 5000", "port 8080", "$PORT"],
        "ja": ["5000", "8080", "$PORT"],
    },
    # It stops at once: its exit code and its own error line.
    "exits-at-start": {
        "en": ["stopped while starting", "exit code 3", "DATABASE_URL is not set"],
        "ja": ["3", "DATABASE_URL is not set"],
    },
    # A module it imports is not installed: the package that provides it and the file to add it to.
    "module-missing": {
        "en": ["imports yaml", "PyYAML", "requirements.txt"],
        "ja": ["yaml", "PyYAML", "requirements.txt"],
    },
    # It answers, with an error: the status and the error's first line, not "did not answer".
    "health-check-fails": {
        "en": ["with HTTP 500", "TemplateNotFound"],
        "ja": ["500", "TemplateNotFound"],
    },
    "procfile-empty": {
        "en": ["The Procfile names no process"],
        "ja": ["Procfile", "web:"],
    },
    # Django's own tutorial project: the database file it could not write, why, and what keeps data here.
    "django-tutorial": {
        "en": ["could not write its SQLite database, db.sqlite3", "read-only", "PostgreSQL add-on"],
        "ja": ["db.sqlite3", "PostgreSQL", "migrate"],
    },
    # Nothing an app starts from: what would make it one, and the nearest sample.
    "no-app": {
        "en": ["could not tell what kind of app this is", "requirements.txt"],
        "ja": ["requirements.txt", "package.json"],
    },
}
# Words a Japanese page keeps as they are here: the app's own names and commands.
KEPT = {"olivia", "gunicorn", "app", "flask", "python", "readme", "md", "index", "html", "go", "mod", "pip", "install",
        "host", "port", "listen", "run", "os", "environ", "int", "process", "bind", "static", "site",
        # The files an app starts from, as the no-app diagnosis lists them (and the upload's own notes.txt).
        "composer", "gemfile", "notes", "package", "pom", "procfile", "pyproject", "requirements",
        # The releases table cuts the diagnosis short, inside its example command: "…, port=…" ends "por…".
        "por",
        # Process types and code, as the person writes them: `web:`, `worker:`, `import yaml`.
        "web", "worker", "import", "yaml", "pyyaml", "jinja2",
        # What the app itself printed, quoted as its error line: not Hakobune's words.
        "runtimeerror", "database", "is", "not", "set", "this", "needs", "modulenotfounderror", "no", "module",
        "named", "listening", "on", "unable", "to", "open", "file", "sqlite",
        # The commands the SQLite diagnosis gives: `release: python manage.py migrate`.
        "release", "migrate"}


@pytest.mark.parametrize("language", ["en", "ja"])
def test_a_beginners_failed_deploys_say_why_in_their_language(language, live_server, owner, team_name, worker,
                                                             tmp_path):
    team = create_team(name=team_name, owner=owner)
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--lang={language}"],
                                             env={**os.environ, "LANGUAGE": language})
        try:
            _, page = log_in(browser, live_server, "olivia", PHONE, language)
            # Uploaded one after the other, as a beginner tries again and again; built side by side.
            for app in SAID:
                archive = tmp_path / f"{app}.zip"
                archive.write_bytes(archive_of(app, "zip"))
                visit(page, f"{live_server.url}/t/{team.name}/services/new/")
                page.fill("#id_name", app)
                page.set_input_files("#id_source", str(archive))
                page.click("button[type=submit]")
                expect(page.locator("#build-status")).to_be_visible()
            # Each service page says why its deploy failed, where the failure is shown.
            for app, said in SAID.items():
                visit(page, f"{live_server.url}/t/{team.name}/{app}/")
                expect(page.locator("#failure-reason")).to_be_visible(timeout=420_000)
                # The live page reloads itself once the build's log has ended: read the page as it then is.
                visit(page, f"{live_server.url}/t/{team.name}/{app}/")
                failure = page.locator("#failure-reason")
                for words in said[language]:
                    expect(failure).to_contain_text(words)
                expect(page.locator("h1").first).to_be_visible()
                problems += check(page, f"doctor-{app}", language, "phone", KEPT | {team.name, app},
                                  shot=f"doctor-{app}-{language}-phone")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
