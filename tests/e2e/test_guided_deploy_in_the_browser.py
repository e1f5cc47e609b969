"""The guided first deploy in a real browser, on a phone (390 px wide),
against a live portal with real workers: a newcomer with no service starts
from the dashboard, picks the Flask sample, reads the plan (found before
anything is built), keeps the suggested size, deploys, watches the steps
light up, opens the app and sees it answer, and reads what just happened.
The same in Japanese. Every page of the flow fits the screen; in Japanese no
English interface string is left. Screenshots of each step are saved as
test artifacts (with HAKOBUNE_UPDATE_SCREENSHOTS=1 also in docs/screenshots/)."""

import os
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import Build, BuildStatus, PlanCheck
from tests.e2e.test_first_deploy_in_the_browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_languages_and_phones import PHONE, check, log_in, visit

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]

# Names the pages show as they are: the samples' frameworks and languages, the tools they name.
NAMES = {"flask", "fastapi", "django", "node", "js", "express", "python", "javascript", "html", "css", "gunicorn",
         "uvicorn", "npm", "whitenoise", "docs", "caddy", "first", "app", "cpu"}


@pytest.mark.parametrize("language", ["en", "ja"])
def test_a_newcomer_deploys_the_flask_sample_in_the_guided_flow(language, live_server, owner, team_name, worker):
    team = create_team(name=team_name, owner=owner)
    name = f"first-{language}"
    user_words = NAMES | {team.name, name, "olivia"}
    problems = []

    def look(page, step):
        problems.extend(check(page, f"guided-{step}", language, "phone", user_words,
                              shot=f"guided-{step}-{language}-phone"))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--lang={language}"],
                                             env={**os.environ, "LANGUAGE": language})
        try:
            context, page = log_in(browser, live_server, "olivia", PHONE, language)
            # 1. A team with no service: the dashboard offers the guided deploy.
            look(page, "1-dashboard")
            page.click("#start-guided")
            expect(page.locator("#guided-source-form")).to_be_visible()
            look(page, "2-source")
            # The sample is the suggested source; Flask is the first sample.
            expect(page.locator("input[name=source_kind][value=sample]")).to_be_checked()
            page.fill("#id_name", name)
            # With the keyboard: the sample chosen shows the focus on its card and on itself.
            page.focus("input[name=sample][value=flask]")
            page.keyboard.press("ArrowDown")
            focused = page.evaluate("""() => {
              const el = document.activeElement, card = el.closest('label');
              return [el.value, getComputedStyle(el).outlineStyle, getComputedStyle(card).outlineStyle];
            }""")
            assert focused == ["fastapi", "solid", "solid"], focused
            page.check("input[name=sample][value=flask]")
            page.click("#look-at-source")

            # 2. The plan, found by a worker, before anything is built.
            expect(page.locator("#plan-start")).to_be_visible(timeout=120_000)
            assert not Build.objects.filter(service__name=name).exists(), "nothing is built before the deploy"
            assert PlanCheck.objects.get(service__name=name).status == PlanCheck.Status.DONE
            expect(page.locator("#plan-start code")).to_contain_text("gunicorn")
            expect(page.locator("#plan-port strong")).to_have_text("8080")
            expect(page.locator("#plan-install code").first).to_contain_text("pip install -r requirements.txt")
            for row in ("found", "install", "start", "port", "health"):
                expect(page.locator(f"#plan-{row} .change a")).to_be_visible()
            expect(page.locator("#size-medium")).to_be_checked()
            look(page, "3-plan")
            # "change" leads to the setting itself, on the service page, opened and focused.
            page.click("#plan-start .change a")
            expect(page.locator("#id_start_command")).to_be_visible()
            expect(page.locator("#id_start_command")).to_be_focused()
            page.go_back()
            expect(page.locator("#deploy-plan")).to_be_visible()

            # 3. The deploy: the steps light up without a reload of the page.
            page.click("#deploy-plan")
            expect(page.locator("#step-fetch")).to_be_visible()
            page.evaluate("window.notReloaded = true")
            expect(page.locator("#step-fetch")).to_have_attribute("data-state", "done", timeout=120_000)
            look(page, "4-deploying")
            expect(page.locator("#open-app")).to_be_visible(timeout=420_000)
            assert page.evaluate("window.notReloaded === true"), "the page reloaded while the steps ran"
            for step in ("fetch", "detect", "build", "start", "health", "route"):
                expect(page.locator(f"#step-{step}")).to_have_attribute("data-state", "done")
                expect(page.locator(f"#step-{step} .step-time")).to_have_text(re.compile(r"\d+\.\d (s|秒)"))
            build = Build.objects.get(service__name=name)
            assert build.status == BuildStatus.LIVE
            assert set(build.milestones) == {"fetched", "detected", "built", "started", "healthy", "routed"}
            what = page.locator("#what-happened")
            expect(what.locator("#by-hand-build")).to_contain_text(f"docker build -f Dockerfile.hakobune -t {build.image} .")
            expect(what.locator("#by-hand-start")).to_contain_text("docker run -d")
            expect(what.locator("#by-hand-start")).to_contain_text("--memory 256m")
            expect(what.locator("#by-hand-route")).to_contain_text(f"--from {build.service.hostname}")
            look(page, "5-live")

            # 4. The app answers at its address.
            url = page.locator("#open-app").get_attribute("href")
            app = context.new_page()
            visit(app, url)
            expect(app.locator("h1")).to_have_text("Hello from Flask on Hakobune!")
        finally:
            browser.close()
    assert not problems, "\n".join(problems)
