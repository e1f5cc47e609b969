"""A beginner opens their deployed app's page on a phone and reads what it is
made of: the "Under the hood" panel, read live from the running container
(namespaces, cgroup limits, capabilities, image layers, the host's kernel),
in English and in Japanese, with nothing wider than the screen and no English
left on the Japanese page. Screenshots of the panel are saved as test
artifacts (and, with HAKOBUNE_UPDATE_SCREENSHOTS=1, into docs/screenshots/)."""

import os
import shutil

import pytest
from playwright.sync_api import expect, sync_playwright

from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import upload_of
from tests.e2e.test_first_deploy_in_the_browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_languages_and_phones import (
    ARTIFACTS,
    DESKTOP,
    DOCS_SCREENSHOTS,
    PHONE,
    english_left,
    log_in,
    too_wide,
    visible_texts,
    visit,
)
from tests.support.infrastructure import wait_for_build

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]

OWN_NAMESPACES = ("pid", "net", "mnt", "uts", "ipc")


@pytest.fixture
def hello(owner, team_name, worker):
    team = create_team(name=team_name, owner=owner)
    service = create_service(team=team, name="hello", created_by=owner)
    build = wait_for_build(deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner))
    assert build.status == BuildStatus.LIVE, build.failure_text
    service.refresh_from_db()
    return service


def shoot_panel(page, name: str) -> None:
    """The panel alone, as a test artifact (and the current one in docs/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.locator("section.hood").screenshot(path=str(path))
    if os.environ.get("HAKOBUNE_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)


def read_panel(page) -> dict:
    """What the panel shows, as the person reads it."""
    return page.evaluate("""() => {
      const rows = {};
      document.querySelectorAll('#hood-namespaces tbody tr').forEach((tr) => {
        rows[tr.dataset.kind] = [tr.querySelector('.ns-container').textContent.trim(),
                                 tr.querySelector('.ns-host').textContent.trim()];
      });
      return {
        namespaces: rows,
        memoryLimit: document.querySelector('.hood-memory-limit').dataset.bytes,
        memoryText: document.querySelector('.hood-memory-limit').textContent.trim(),
        capabilities: document.querySelector('#hood-cap-effective').dataset.count,
        capabilitiesText: document.querySelector('#hood-cap-effective').textContent.trim(),
        layers: [...document.querySelectorAll('.hood-layer')].map((tr) => [tr.dataset.part, tr.dataset.bytes,
                 tr.dataset.shared, tr.children[1].textContent.trim()]),
        kernel: document.querySelector('#hood-vm code').textContent.trim(),
      };
    }""")


def test_a_beginner_reads_under_the_hood_on_a_phone_in_english_and_japanese(live_server, hello):
    memory = hello.memory_mb * 1024 * 1024
    user_words = {hello.team.name, hello.name, "olivia", "hello"}
    problems = []
    with sync_playwright() as playwright:
        for language in ("en", "ja"):
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--lang={language}"])
            try:
                for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
                    context, page = log_in(browser, live_server, "olivia", viewport, language)
                    visit(page, f"{live_server.url}/t/{hello.team.name}/hello/")
                    # The panel is read once the page has loaded.
                    expect(page.locator("#hood-namespaces")).to_be_visible(timeout=30_000)
                    page.locator("section.hood").scroll_into_view_if_needed()
                    shown = read_panel(page)
                    where = f"{language}, {size}"

                    for kind in OWN_NAMESPACES:
                        container, host = shown["namespaces"][kind]
                        assert container.isdigit() and host.isdigit() and container != host, (where, kind, shown)
                    assert shown["namespaces"]["user"][0] == shown["namespaces"]["user"][1], where
                    assert shown["memoryLimit"] == str(memory), where
                    assert shown["memoryText"] == f"{hello.memory_mb} MiB", where
                    assert shown["capabilities"] == "0", where
                    layers = shown["layers"]
                    assert len(layers) >= 3 and layers[0][0] == "stack" and layers[-1][0] == "code", where
                    assert all(bytes_.isdigit() and int(bytes_) >= 0 for _, bytes_, _, _ in layers), where
                    assert int(layers[0][1]) > 10_000_000 and layers[0][3].endswith("MiB"), where
                    assert shown["kernel"] == os.uname().release, where
                    if language == "ja":
                        assert shown["capabilitiesText"] == "空（ケーパビリティ 0 個）"
                        assert page.locator("#hood-title").inner_text() == "コンテナの中身"
                        for text, words in english_left(visible_texts(page, "section.hood"), user_words):
                            problems.append(f"{where}: English left: {words} in {text!r}")
                    else:
                        assert shown["capabilitiesText"] == "empty (0 capabilities)"
                    # What root on the host has, opened.
                    page.locator(".hood-root summary").click()
                    expect(page.locator(".hood-root .cap-list code").first).to_have_text("chown")
                    if size == "phone":
                        measured = too_wide(page)
                        if measured["page"] > measured["width"]:
                            problems.append(f"{where}: the page scrolls sideways ({measured['page']} px)")
                        problems += [f"{where}: wider than the screen: {element}" for element in measured["wide"]]
                        # The panel's tables fit the screen: none needs its box scrolled sideways to be read.
                        scrolled = page.evaluate("""() => [...document.querySelectorAll('section.hood .table-scroll')]
                          .filter((box) => box.scrollWidth > box.clientWidth + 1)
                          .map((box) => box.closest('.hood-part').id)""")
                        problems += [f"{where}: a table of {part} scrolls sideways" for part in scrolled]
                    shoot_panel(page, f"under-the-hood-{language}-{size}")
                    context.close()
            finally:
                browser.close()
    assert not problems, "\n".join(problems)
