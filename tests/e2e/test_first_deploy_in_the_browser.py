"""A beginner's first deploy, in a real browser: log in, upload a folder's
archive on the New service page, watch the build, open the app's address."""

import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from hakobune.platform.accounts.services import create_team
from tests.conftest import archive_of

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser_page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        yield page
        browser.close()


def test_a_beginner_uploads_a_folder_and_opens_the_live_app(
    browser_page, live_server, owner, team_name, worker, tmp_path
):
    team = create_team(name=team_name, owner=owner)
    archive = tmp_path / "my-first-app.zip"
    archive.write_bytes(archive_of("flask-hello", "zip"))
    page = browser_page

    page.goto(f"{live_server.url}/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "correct horse battery")
    page.click("button[type=submit]")
    expect(page.get_by_role("heading", name=f"{team.name} team")).to_be_visible()
    expect(page.get_by_text("Deploy your first app")).to_be_visible()

    page.click("text=New service")
    page.fill("#id_name", "hello")
    page.set_input_files("#id_source", str(archive))
    page.click("button[type=submit]")

    # The page follows the build live and shows the address once it is up.
    expect(page.locator("#build-status")).to_be_visible()
    expect(page.locator("#service-url")).to_be_visible(timeout=240_000)
    expect(page.locator("#service-status")).to_have_text("live")
    expect(page.locator("#build-log")).to_contain_text("Detected a python app")
    url = page.locator("#service-url").inner_text()

    page.goto(url)
    expect(page.locator("body")).to_contain_text("Hello from Hakobune!")
