"""An administrator sends a team's Cloud Run services to the team's own Google
Cloud project, in a real browser: the Cloud Run page, the team's settings
form with its service-account key uploaded as a file, and Check access
answering from (fake) Cloud Run as the key's account."""

import json
import os
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from hakobune.platform.accounts.services import create_team
from hakobune.platform.services.models import TeamCloudRunSettings
from tests.e2e.test_first_deploy_in_the_browser import browser_page  # noqa: F401 (fixture)
from tests.unit.conftest import queued_tasks  # noqa: F401 (fixture)
from tests.unit.cloud_run_fixtures import (  # noqa: F401 (fixtures)
    cloudrun_target,
    fake_gcp,
    loopback_only,
    service_account_key,
    storage_emulator,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
KEY_EMAIL = "deployer@acme-prod.iam.gserviceaccount.com"


def screenshot(page, name):
    """Saved for the docs when HAKOBUNE_SCREENSHOTS names a folder."""
    folder = os.environ.get("HAKOBUNE_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def test_an_admin_gives_a_team_its_own_project_and_checks_access(browser_page, live_server, owner, cloudrun_target, tmp_path):
    get_user_model().objects.create_user(username="ada", password="correct horse battery", is_staff=True)
    create_team(name="acme", owner=owner)
    key_file = tmp_path / "acme-prod-0123abcd.json"
    key_file.write_text(json.dumps(service_account_key(cloudrun_target, email=KEY_EMAIL)))
    page = browser_page

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "ada")
    page.fill("#id_password", "correct horse battery")
    page.click("button[type=submit]")
    page.click("text=Cloud Run")
    expect(page.get_by_role("heading", name="Cloud Run")).to_be_visible()
    page.get_by_role("row", name="acme").get_by_role("link", name="Edit").click()

    page.fill("#id_project", "acme-prod")
    page.fill("#id_region", "us-central1")
    page.set_input_files("#id_key_file", str(key_file))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved;")).to_be_visible()
    expect(page.get_by_text(f"service-account key of {KEY_EMAIL} (stored encrypted)")).to_be_visible()

    page.get_by_role("button", name="Check access").click()
    expect(page.locator("#check-result")).to_contain_text(
        f"Hakobune reached Cloud Run in project acme-prod, region us-central1, as {KEY_EMAIL}"
    )
    screenshot(page, "portal-cloud-run-team.png")
    assert TeamCloudRunSettings.objects.get(team__name="acme").key_email == KEY_EMAIL


def test_a_developer_splits_traffic_between_two_revisions(browser_page, live_server, owner, cloudrun_target, queued_tasks):
    from hakobune.platform.services.models import Release
    from hakobune.platform.services.services import create_service
    from tests.unit.cloud_run_fixtures import run_pipeline

    team = create_team(name="acme", owner=owner)
    service = create_service(team=team, name="shop", created_by=owner, target="cloudrun")
    first = run_pipeline(service, owner, queued_tasks)
    service.memory_mb = 1024
    service.save()
    second = run_pipeline(service, owner, queued_tasks)
    v1, v2 = Release.objects.get(build=first), Release.objects.get(build=second)
    page = browser_page

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "correct horse battery")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/t/acme/shop/")
    releases = page.locator("#releases")
    expect(releases).to_contain_text(v1.runtime_state["revision"])
    expect(releases.locator("td.traffic")).to_have_text(["100%", "0%"])

    page.fill(f"input[name=v{v2.number}]", "20")
    page.fill(f"input[name=v{v1.number}]", "80")
    page.get_by_role("button", name="Send traffic").click()
    expect(page.get_by_text(f"Requests now go 80% to v{v1.number}, 20% to v{v2.number}.")).to_be_visible()
    expect(page.locator("#releases td.traffic")).to_have_text(["20%", "80%"])
    screenshot(page, "portal-cloud-run-traffic.png")
