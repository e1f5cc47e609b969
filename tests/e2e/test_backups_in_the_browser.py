"""An add-on's Backups card in a real browser: a verified backup and a failed
one (shown in red, its reason in full), at phone width (390 px) and in
Japanese, fit the screen; the dashboard says the add-on needs attention."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import sync_playwright

from hakobune.platform.accounts.services import create_team
from hakobune.platform.addons.models import AddOn, Backup
from tests.e2e.test_first_deploy_in_the_browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_languages_and_phones import PASSWORD, PHONE, log_in, too_wide, visit

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]


def test_the_backups_card_fits_a_phone_in_japanese_and_a_failure_is_red(live_server):
    owner = get_user_model().objects.create_user(username="olivia", password=PASSWORD)
    team = create_team(name="acme", owner=owner)
    addon = AddOn.objects.create(team=team, name="db", kind="postgres", status=AddOn.Status.READY, cpu=0.5,
                                 memory_mb=256, volume="v", password_encrypted="", database="db",
                                 image="hakobune/stack-postgres:bookworm", version="15.14")
    now = timezone.now()
    Backup.objects.create(addon=addon, team=team, kind="postgres", status="verified", step="done", storage="local",
                          location="acme/db/1.dump", size_bytes=104_857_600, sha256="0" * 64,
                          checked={"passed": True, "summary": "12 tables and 1048576 rows, as when it was dumped."},
                          finished_at=now)
    failed = Backup.objects.create(
        addon=addon, team=team, kind="postgres", status="failed", step="done", storage="s3", finished_at=now,
        detail="The upload to the bucket hakobune-backups-of-a-rather-long-name failed: the storage server answered "
               "500 (InternalError: We encountered an internal error. Please try again.).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, "--lang=ja"])
        try:
            context, page = log_in(browser, live_server, "olivia", PHONE, "ja")
            visit(page, f"{live_server.url}/teams/acme/addons/")
            assert page.locator("#backups-db h2").inner_text() == "db のバックアップ"
            assert "今すぐバックアップ" in page.locator("#backups-db").inner_text()
            row = page.locator(f"#backup-{failed.id}")
            assert "bad-row" in row.get_attribute("class")
            assert "500 (InternalError" in row.inner_text()
            measured = too_wide(page)
            assert measured["page"] <= measured["width"] and not measured["wide"], measured
            visit(page, f"{live_server.url}/")
            assert page.locator("#backup-attention").is_visible()
            assert "db の最新のバックアップが失敗しました" in page.locator("#backup-attention").inner_text()
            measured = too_wide(page)
            assert measured["page"] <= measured["width"] and not measured["wide"], measured
            context.close()
        finally:
            browser.close()
