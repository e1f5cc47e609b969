"""The request charts of a local service as its owner reads them on a phone
(390 px; and on a desktop), in English and in Japanese: requests per minute by status class,
latency p50/p95/p99 and the data sent, each titled with its unit, with axis
labels large enough to read and every word in the page's language. The
service is deployed for real; its half hour of traffic is stored as the log
collector stores what it reads from the router's access log
(request_points)."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import sync_playwright

from hakobune.platform.accounts.services import create_team
from hakobune.platform.builds.models import BuildStatus
from hakobune.platform.observability.logcollector import request_points
from hakobune.platform.observability.models import MetricPoint
from hakobune.platform.services.services import create_service, deploy_service
from tests.conftest import upload_of
from tests.e2e.test_first_deploy_in_the_browser import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_languages_and_phones import ARTIFACTS, DESKTOP, KEPT_WORDS, PHONE, log_in, too_wide, visit
from tests.support.infrastructure import wait_for_build

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True, databases=["default", "logs"])]

# The smallest text a phone shows legibly (CSS px).
SMALLEST_TEXT_PX = 10

# Each language's titles of the requests, latency and data sent charts, and their units.
CHARTS = {
    "en": (("Requests", "per minute"), ("Latency", "ms"), ("Data sent", "KiB per minute")),
    "ja": (("リクエスト", "毎分"), ("応答時間", "ms"), ("送信データ量", "KiB/分")),
}


@pytest.fixture
def busy_service(owner, team_name, worker):
    """A live service that answered 30 requests fine, 3 not found and now and
    then one failing every 15 s (the collector's period) for half an hour."""
    team = create_team(name=team_name, owner=owner)
    service = create_service(team=team, name="hello", created_by=owner)
    build = wait_for_build(deploy_service(service=service, source_file=upload_of("flask-hello"), created_by=owner))
    assert build.status == BuildStatus.LIVE, build.failure_text
    now = timezone.now()
    points = []
    for period in range(120):
        requests = [(200, 0.012, 2400)] * 30 + [(404, 0.004, 150)] * 3 + [(500, 0.9, 0)] * (period % 7 == 0)
        points += request_points(service.id, requests, now - timedelta(seconds=15 * (120 - period)))
    MetricPoint.objects.bulk_create(points)
    return service


def chart_cards(page) -> dict:
    """Each chart's title, unit and legend as shown, and the size its axis
    labels are drawn at."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#metrics .chart-card')].map((card) => {
      // The labels as drawn: text in the page, or text inside the SVG scaled with it.
      const axis = [...card.querySelectorAll('.chart .axis, svg text')];
      const drawn = (label) => {
        const svg = label.closest('svg');
        const scale = svg && svg.viewBox.baseVal ? svg.getBoundingClientRect().width / svg.viewBox.baseVal.width : 1;
        return parseFloat(getComputedStyle(label).fontSize) * scale;
      };
      const plot = card.querySelector('.chart svg, svg.chart').getBoundingClientRect();
      return [card.querySelector('figcaption strong').textContent.trim(), {
        unit: (card.querySelector('figcaption > .muted') || {textContent: ''}).textContent.trim(),
        legend: [...card.querySelectorAll('.legend > span')].map((item) => item.textContent.trim().replace(/\\s+/g, ' ')),
        axis: axis.map((label) => label.textContent.trim()),
        smallest: Math.min(...axis.map(drawn)),
        plot: [Math.round(plot.width), Math.round(plot.height)],
        overlapping: axis.filter((label) => !label.closest('svg')).some((label, n, all) => all.slice(n + 1).some((other) => {
          const a = label.getBoundingClientRect(), b = other.getBoundingClientRect();
          return a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
        })),
      }];
    }))""")


def test_the_request_charts_read_well_on_a_phone_in_english_and_japanese(live_server, busy_service):
    service = busy_service
    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for language in ("en", "ja"):
                context, page = log_in(browser, live_server, "olivia", PHONE, language)
                visit(page, f"{live_server.url}/t/{service.team.name}/{service.name}/")
                page.wait_for_selector("#metrics .chart-card svg")
                for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
                    page.set_viewport_size(viewport)
                    page.locator("#metrics").scroll_into_view_if_needed()
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    page.locator("#metrics").screenshot(path=str(ARTIFACTS / f"metrics-{language}-{size}.png"))
                    problems += [f"{language}, {size}: {problem}" for problem in misreadings(chart_cards(page), language)]
                    if size == "phone":
                        problems += [f"{language}, phone: wider than the screen: {element}"
                                     for element in too_wide(page)["wide"]]
                context.close()
        finally:
            browser.close()
    assert not problems, "\n".join(problems)


def misreadings(cards: dict, language: str) -> list[str]:
    found = []
    for title, unit in CHARTS[language]:
        if title not in cards:
            found.append(f"no {title!r} chart among {list(cards)}")
        elif cards[title]["unit"] not in (f"({unit})", f"（{unit}）"):
            found.append(f"{title!r} reads in {cards[title]['unit']!r}, not {unit!r}")
    (requests_title, _), (latency_title, _), _ = CHARTS[language]
    # 30 requests each 15 s are 120 a minute; 3 not found, 12.
    legend = cards.get(requests_title, {}).get("legend", [])
    if not {"2xx 120", "4xx 12"} <= set(legend):
        found.append(f"the requests' legend says {legend}")
    legend = cards.get(latency_title, {}).get("legend", [])
    if [item.split()[0] for item in legend] != ["p50", "p95", "p99"]:
        found.append(f"the latency legend says {legend}")
    for title, card in cards.items():
        if card["smallest"] < SMALLEST_TEXT_PX:
            found.append(f"{title!r}'s axis labels are drawn at {card['smallest']:.1f} px")
        if card["overlapping"]:
            found.append(f"{title!r}'s axis labels overlap: {card['axis']}")
        if card["plot"][1] < 80:
            found.append(f"{title!r}'s lines are drawn {card['plot'][1]} px high")
        if language == "ja":
            words = {word.lower() for text in [*card["legend"], *card["axis"], card["unit"]]
                     for word in re.findall(r"[A-Za-z]{2,}", text)}
            if words - KEPT_WORDS:
                found.append(f"English left in {title!r}: {sorted(words - KEPT_WORDS)}")
    return found


def test_a_followed_log_keeps_its_newest_lines_and_still_shows_the_older_ones(live_server, busy_service):
    """While the card follows a service that prints a lot, it holds at most
    LOG_LINES_SHOWN lines: the oldest go, and Show older lines brings back
    the ones just before the first kept."""
    from hakobune.platform.observability.models import LogLine
    from hakobune.platform.observability.views import LOG_LINES_SHOWN

    service = busy_service
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context, page = log_in(browser, live_server, "olivia", PHONE, "en")
            visit(page, f"{live_server.url}/t/{service.team.name}/{service.name}/")
            page.wait_for_selector("#log-lines .log-poller", state="attached")
            count = LOG_LINES_SHOWN + 600
            LogLine.objects.bulk_create([
                LogLine(service_id=service.id, team_id=service.team_id, timestamp=timezone.now(), instance="i",
                        process="web", release=1, stream="stdout", text=f"printed {n}", size=12)
                for n in range(count)
            ])
            page.wait_for_function(f"() => document.querySelector('#log-lines').textContent.includes('printed {count - 1}')",
                                   timeout=60_000)
            page.wait_for_timeout(500)
            shown = page.eval_on_selector_all("#log-lines > .line", "lines => lines.map(l => l.textContent)")
            assert len(shown) <= LOG_LINES_SHOWN and shown[-1].endswith(f"printed {count - 1}")
            first_kept = int(shown[0].rsplit(" ", 1)[1])
            assert first_kept >= count - LOG_LINES_SHOWN
            page.click("#log-lines .log-older button")
            page.wait_for_function(f"() => document.querySelector('#log-lines').textContent.includes('printed {first_kept - 1}')")
            again = page.eval_on_selector_all("#log-lines > .line", "lines => lines.map(l => l.textContent)")
            texts = [line.rsplit(" ", 1)[1] for line in again if " printed " in line]
            assert texts == [str(n) for n in range(int(texts[0]), count)], "older lines come back in order, none twice"
            context.close()
        finally:
            browser.close()
