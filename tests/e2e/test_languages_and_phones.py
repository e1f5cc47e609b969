"""Every portal page in a real browser, with a deployed service so the service
pages have content (a worker process, a scheduled job's runs, runtime log
lines; the team deletion confirmation an administrator sees): at phone width (390 px) nothing is wider than the screen
and the header's links do not overlap; with a Japanese browser no English
interface string is left; keyboard focus shows. Screenshots of the key pages
in English and Japanese, phone and desktop, are saved as test artifacts
($HAKOBUNE_E2E_ARTIFACTS, default var/e2e-artifacts; with
HAKOBUNE_UPDATE_SCREENSHOTS=1 also into docs/screenshots/)."""

import os
import re
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from hakobune.platform.accounts.services import add_member, create_team
from hakobune.platform.addons.actions import add_external
from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.observability.models import LogLine
from hakobune.platform.services import jobs
from hakobune.platform.services.models import JobRun
from hakobune.platform.services.services import create_service, deploy_service, set_env
from hakobune.platform.volumes.actions import create_volume
from hakobune.platform.volumes.models import Volume
from tests.conftest import upload_of
from tests.e2e.test_first_deploy_in_the_browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.infrastructure import wait_for_build

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]

PROJECT_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("HAKOBUNE_E2E_ARTIFACTS", PROJECT_DIR / "var" / "e2e-artifacts"))
DOCS_SCREENSHOTS = PROJECT_DIR / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
PASSWORD = "correct horse battery"

# Names and technical words a Japanese page keeps as they are: products,
# units, protocols, file names; anything else in Latin letters is a leftover.
KEPT_WORDS = {
    "hakobune", "cloud", "run", "docker", "engine", "dockerfile", "git", "github", "gitlab", "mib", "gib", "kib",
    "webhook", "secret", "manager", "debian", "bookworm", "trixie", "manage", "py", "prune", "latest", "ms", "p50",
    "p95", "p99", "xx", "env", "localhost", "gz", "xz", "zip", "tar", "tgz", "txz", "node_modules", "venv", "dist",
    "sha256", "buildpacks", "gcr", "io", "builder", "artifact", "registry", "load", "balancer", "google", "accessor",
    "toml", "actions", "b", "db", "application", "json", "redis", "django", "slack", "discord", "microsoft", "teams",
    "workflows", "https", "syslog", "postgresql", "cron",
    # Under the hood: the kernel's and the runtimes' own names.
    "linux", "cgroup", "overlayfs", "root", "gvisor", "microvm", "go",
}

# The service's hakobune.toml: a worker beside the web process, and a job.
TOML = """[processes]
worker = "python worker.py"

[[jobs]]
name = "tidy"
schedule = "* * * * *"
command = "python job.py"
"""
WORKER = 'import time\nprint("worker started", flush=True)\nwhile True:\n    time.sleep(30)\n'
JOB = 'import sys\nprint("tidying", flush=True)\nsys.exit(3)\n'



def visible_texts(page, root="body"):
    """Every visible piece of interface text: text nodes outside code, logs and
    fields, and the placeholders, titles and labels of elements; each with
    the user data (names, addresses) it may hold. Elements marked with
    another language (lang="en", like the language switcher's "English") are
    left out, as they say what they are. `root`: the part of the page looked
    at (the administration pages' own navigation names every model, and is
    not the portal's)."""
    return page.evaluate("""(root) => {
      const top = document.querySelector(root);
      const out = [];
      const skip = (el) => el.closest('code, pre, script, style, svg, [lang]:not([lang="ja"]), .brand, .who, .crumbs, option, .log .line');
      const walker = document.createTreeWalker(top, NodeFilter.SHOW_TEXT);
      while (walker.nextNode()) {
        const node = walker.currentNode, el = node.parentElement, text = node.textContent.trim();
        if (!text || !el || skip(el)) continue;
        const style = getComputedStyle(el);
        if (style.display === 'none' || style.visibility === 'hidden' || !el.getClientRects().length) {
          if (!el.closest('.visually-hidden')) continue;
        }
        out.push(text);
      }
      top.querySelectorAll('[placeholder], [title], [aria-label]').forEach((el) => {
        if (skip(el) && !el.matches('[lang="ja"]')) return;
        for (const name of ['placeholder', 'title', 'aria-label']) {
          const value = el.getAttribute(name);
          if (value) out.push(value);
        }
      });
      return out;
    }""", root)


def english_left(texts, user_words):
    """The texts that still hold an English word."""
    left = []
    for text in texts:
        # Addresses, paths, file suffixes, variables, release numbers, chat
        # channels (#deploys) and example names (my-app) are not words of the interface.
        scrubbed = re.sub(
            r"https?://\S+|[\w.-]+\.(localhost|example|com|org)\S*|\S+@\S+|\S*/\S+|\$\w+|\.\w+|\bv\d+\b|#[\w-]+"
            r"|\b[a-z0-9]+(-[a-z0-9]+)+\b", " ", text)
        # Words in capitals are acronyms and names of variables (CPU, API, KEY, PRUNE_SECONDS).
        words = {word.lower() for word in re.findall(r"[A-Za-z][A-Za-z0-9_]+", scrubbed) if not re.fullmatch(r"[A-Z0-9_]+", word)}
        unknown = words - KEPT_WORDS - user_words
        if unknown:
            left.append((text, sorted(unknown)))
    return left


def too_wide(page):
    """Elements that reach past the viewport (outside a box that scrolls
    them), and the page's own horizontal scroll."""
    return page.evaluate("""() => {
      const width = document.documentElement.clientWidth, wide = [];
      // Inside a box that scrolls (or clips) sideways and itself fits the screen.
      const scrolls = (el) => {
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
          const x = getComputedStyle(p).overflowX;
          if (x === 'auto' || x === 'scroll' || x === 'hidden' || x === 'clip') {
            const box = p.getBoundingClientRect();
            if (box.right <= width + 1 && box.left >= -1) return true;
          }
        }
        return false;
      };
      document.querySelectorAll('body *').forEach((el) => {
        const box = el.getBoundingClientRect();
        if (!box.width || el.closest('.visually-hidden, .skip-link')) return;
        if ((box.right > width + 1 || box.left < -1) && !scrolls(el)) {
          wide.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className && typeof el.className === 'string' ? '.' + el.className.trim().replace(/\\s+/g, '.') : ''} [${Math.round(box.left)}, ${Math.round(box.right)}]`);
        }
      });
      return {page: document.documentElement.scrollWidth, width, wide};
    }""")


def header_overlaps(page):
    """Pairs of the header's links and buttons that overlap each other."""
    return page.evaluate("""() => {
      const items = [...document.querySelectorAll('.topbar a, .topbar button, .topbar .who')]
        .filter((el) => !el.classList.contains('skip-link') && el.getClientRects().length)
        .map((el) => [el.textContent.trim(), el.getBoundingClientRect()]);
      const hits = [];
      for (let i = 0; i < items.length; i++) for (let j = i + 1; j < items.length; j++) {
        const [a, r] = items[i], [b, s] = items[j];
        if (a && b && r.left < s.right - 1 && s.left < r.right - 1 && r.top < s.bottom - 1 && s.top < r.bottom - 1) {
          if (!(r.left >= s.left && r.right <= s.right) && !(s.left >= r.left && s.right <= r.right)) hits.push([a, b]);
        }
      }
      return hits;
    }""")


def shoot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("HAKOBUNE_UPDATE_SCREENSHOTS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / path.name)


def visit(page, url):
    """Opens a page; once more if the browser saw the host's networks change
    (other runs on the machine create and remove Docker networks)."""
    for attempt in range(3):
        try:
            return page.goto(url)
        except PlaywrightError as exc:
            if "ERR_NETWORK_CHANGED" not in str(exc) or attempt == 2:
                raise


def log_in(browser, live_server, username, viewport, language):
    context = browser.new_context(viewport=viewport, locale=language,
                                  extra_http_headers={"Accept-Language": language})
    page = context.new_page()
    visit(page, f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    return context, page


@pytest.fixture
def deployed(owner, team_name, worker, log_collector):
    """A live service with a variable, a worker process, a job that ran once
    (and failed) and lines in its runtime log; and the pages worth a look."""
    team = create_team(name=team_name, owner=owner)
    service = create_service(team=team, name="hello", created_by=owner)
    set_env(service=service, values={"GREETING": "hi"}, unset=[])
    upload = upload_of("flask-hello", extra={"hakobune.toml": TOML, "worker.py": WORKER, "job.py": JOB})
    build = wait_for_build(deploy_service(service=service, source_file=upload, created_by=owner))
    assert build.status == BuildStatus.LIVE, build.failure_text
    service.refresh_from_db()
    assert set(service.processes) == {"worker"}
    minute = timezone.now().replace(second=0, microsecond=0) + timedelta(minutes=1)
    (run,) = jobs.start_due(minute + timedelta(seconds=1))
    deadline = time.monotonic() + 90
    while run.status == JobRun.Status.RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
        jobs.finish(minute + timedelta(seconds=2))
        run.refresh_from_db()
    assert run.status == JobRun.Status.FAILED and run.detail == "it exited with code 3", run.detail
    while not LogLine.objects.filter(service_id=service.id, text__contains="worker started").exists():
        assert time.monotonic() < deadline, "the worker's line is not in the runtime log"
        time.sleep(0.5)
    # A volume the service mounts, and one it does not: the service page's
    # Volumes section and the team's Volumes page, with both kinds of rows.
    # (Recorded as mounted for the pages only: no release is made for it.)
    volumes = [create_volume(team=team, name=name, created_by=owner) for name in ("uploads", "spare")]
    while Volume.objects.filter(status=Volume.Status.PROVISIONING).exists():
        assert time.monotonic() < deadline + 120, "the volumes are still being made"
        time.sleep(0.5)
    Volume.objects.filter(id=volumes[0].id).update(service=service, mount_path="/app/uploads", size_bytes=123456,
                                                   measured_at=timezone.now())
    staff = get_user_model().objects.create_user(username="sam", password=PASSWORD, is_staff=True)
    add_member(team=team, user=staff, role="developer")
    get_user_model().objects.create_superuser(username="ada", password=PASSWORD)
    # An external database staff entered for the team: on the Add-ons, New service and team quota pages.
    add_external(team=team, kind="postgres", name="shop", url="postgres://app:pw@shop.example.com:5432/shop",
                 created_by=staff)
    return team, service, build


def pages_of(team, service, build):
    member = {
        "dashboard": reverse("services:dashboard"),
        "service": reverse("services:detail", args=[team.name, service.name]),
        "deploy": reverse("builds:detail", args=[team.name, service.name, build.number]),
        "new-service": reverse("services:new", args=[team.name]),
        "new-team": reverse("accounts:team_new"),
        "log-drain": reverse("observability:log_drain", args=[team.name]),
        "api-tokens": reverse("accounts:api_tokens"),
        "password": reverse("accounts:password_change"),
        "audit-log": reverse("observability:team_events", args=[team.name]),
        "addons": reverse("addons:page", args=[team.name]),
        "volumes": reverse("volumes:page", args=[team.name]),
    }
    # The team's own settings, its owner's only.
    owner = {**member, "notifications": reverse("notifications:page", args=[team.name])}
    staff = {
        **member,
        "quotas": reverse("governance:quotas"),
        "team-quota": reverse("governance:team_policy", args=[team.name]),
        "disk": reverse("governance:disk"),
        "stacks": reverse("builds:stacks"),
        "cloud-run": reverse("services:cloud_run"),
        "events": reverse("observability:all_events"),
    }
    # Deleting a team is the administration pages' (not submitted here).
    admin = {"team-delete": reverse("admin:accounts_team_delete", args=[team.id])}
    return {"olivia": owner, "sam": staff, "ada": admin}


SCREENSHOTS = {"login", "dashboard", "service", "deploy", "new-service", "disk", "team-delete"}


def test_every_page_fits_a_phone_and_speaks_japanese(live_server, deployed):
    team, service, build = deployed
    user_words = {team.name, service.name, "olivia", "sam", "ada", "hello", "greeting", "flask", "python", "gunicorn",
                  "web", "worker", "tidy", "shop", "uploads", "spare",
                  "data"}  # the example name and path of a volume (/data), a name, not words
    problems = []
    with sync_playwright() as playwright:
        for language in ("en", "ja"):
            # The browser's own words (a file field's button) in the same language.
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--lang={language}"],
                                                 env={**os.environ, "LANGUAGE": language})
            try:
                for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
                    # The login page, before anyone logs in.
                    context = browser.new_context(viewport=viewport, locale=language,
                                                  extra_http_headers={"Accept-Language": language})
                    page = context.new_page()
                    visit(page, f"{live_server.url}/login/")
                    problems += check(page, "login", language, size, user_words, shot=f"login-{language}-{size}")
                    context.close()
                    for username, pages in pages_of(team, service, build).items():
                        context, page = log_in(browser, live_server, username, viewport, language)
                        for name, path in pages.items():
                            visit(page, f"{live_server.url}{path}")
                            page.wait_for_load_state("networkidle")
                            # Screenshots: the owner's pages, and the staff's Disk page.
                            keep = name in SCREENSHOTS and (username == "sam") == (name == "disk")
                            keep = keep or name == "team-delete"
                            problems += check(page, name, language, size, user_words,
                                              shot=f"{name}-{language}-{size}" if keep else None)
                        context.close()
            finally:
                browser.close()
    assert not problems, "\n".join(problems)


def check(page, name, language, size, user_words, shot=None) -> list[str]:
    found = []
    where = f"{name} ({language}, {size})"
    assert page.locator("h1").count() >= 1, f"{where}: no heading"
    if language == "ja":
        assert page.locator("html").get_attribute("lang") == "ja", where
        root = "#content" if name.startswith("team-delete") else "body"
        for text, words in english_left(visible_texts(page, root), user_words):
            found.append(f"{where}: English left: {words} in {text!r}")
    if size == "phone":
        measured = too_wide(page)
        if measured["page"] > measured["width"]:
            found.append(f"{where}: the page scrolls sideways ({measured['page']} px > {measured['width']} px)")
        found += [f"{where}: wider than the screen: {element}" for element in measured["wide"]]
        found += [f"{where}: header items overlap: {a!r} and {b!r}" for a, b in header_overlaps(page)]
    if shot:
        shoot(page, shot)
    return found


def test_keyboard_focus_is_visible(live_server, owner, db):
    create_team(name="focus", owner=owner)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context, page = log_in(browser, live_server, "olivia", PHONE, "en")
            page.keyboard.press("Tab")
            skip = page.locator(".skip-link")
            assert page.evaluate("document.activeElement.className") == "skip-link"
            assert skip.bounding_box()["y"] >= 0, "the skip link shows when it has focus"
            page.keyboard.press("Tab")
            outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle + ' ' + "
                                    "getComputedStyle(document.activeElement).outlineWidth")
            assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
        finally:
            browser.close()
