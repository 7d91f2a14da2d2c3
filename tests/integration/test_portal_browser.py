"""The portal in a real headless Chromium against a running stack: Redis, the scheduler, two node
workers and the web server, all real processes.  A person's path through it: sign up, submit a
Python job with a data file through the form, watch it finish, read its stdout, download its
output; every page within two clicks of home; no request ever leaves this machine.

The tests of this module run in order and share one browser session (the signed-up user).
Screenshots of every page, at desktop and phone width, land in test-artifacts/portal/.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright import sync_api as playwright_api

from tests.support.cluster import PYTHON, ROOT, Cluster, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that phones home (updates, sync, field trials).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "portal"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
# The viewer's zone, far from the server's UTC, so a time left in UTC would show.
VIEWER_ZONE = "Pacific/Auckland"
USER, PASSWORD = "ada", "analytical-engine-1843"
NAV = ("Home", "Nodes", "Queue", "Submit", "Completed", "Usage")
PAGES = {"Home": "/", "Nodes": "/nodes/", "Queue": "/queue/", "Submit": "/submit/", "Completed": "/completed/",
         "Usage": "/usage/"}  # fmt: skip

FIT = b"""\
import sys
rows = open("data.csv").read().split()
total = sum(float(r) for r in rows)
print(f"read {len(rows)} numbers, total {total}")
print("warming up", file=sys.stderr)
open("result.txt", "w").write(f"total={total}\\n")
"""
NAP = b"import time\nfor i in range(240):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\n"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def portal(cluster: Cluster) -> str:
    """The web server as a real process with the cluster's settings; its base URL."""
    port = free_port()
    argv = [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
    cluster.others.append(cluster._spawn("web", argv))
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(base + "/accounts/login/"), 90, "the portal to answer", interval=0.3)
    return base


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def requests_seen() -> list[str]:
    """Every URL any page of this module asked for."""
    return []


@pytest.fixture(scope="module")
def facts() -> dict:
    """What one test learns and a later one needs (the finished job's page)."""
    return {}


@pytest.fixture(scope="module")
def page(browser, portal, requests_seen):
    """One desktop session, in the viewer's time zone, shared by the tests in order."""
    context = browser.new_context(base_url=portal, viewport=DESKTOP, timezone_id=VIEWER_ZONE, locale="en-GB")
    context.on("request", lambda r: requests_seen.append(r.url))
    context.set_default_timeout(20_000)
    pg = context.new_page()
    pg.on("dialog", lambda d: d.accept())  # the Cancel button asks "Cancel job N?"
    yield pg
    context.close()


@pytest.fixture
def phone(browser, page, portal, requests_seen):
    """A phone-sized page, logged in as the desktop session is."""
    context = browser.new_context(
        base_url=portal,
        viewport=PHONE,
        is_mobile=True,
        has_touch=True,
        timezone_id=VIEWER_ZONE,
        storage_state=page.context.storage_state(),
    )
    context.on("request", lambda r: requests_seen.append(r.url))
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def fits_a_phone(pg, name: str) -> None:
    overflow = pg.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"{name} is {overflow}px wider than a phone"


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def nav(page, name: str) -> None:
    """Click a link of the navigation bar (opening the menu first at phone width)."""
    toggler = page.locator(".navbar-toggler")
    if toggler.is_visible() and toggler.get_attribute("aria-expanded") != "true":
        toggler.click()
    page.locator("#dct-nav").get_by_role("link", name=name, exact=True).click()
    page.wait_for_load_state()


def job_id_from(url: str) -> int:
    match = re.search(r"/jobs/(\d+)/$", url)
    assert match, url
    return int(match.group(1))


def upload(name: str, content: bytes) -> dict:
    return {"name": name, "mimeType": "application/octet-stream", "buffer": content}


# --- the tests, in order --------------------------------------------------------------------


def test_sign_up_log_out_and_log_in_again(page, portal):
    page.goto("/")
    assert urlsplit(page.url).path == "/accounts/login/"
    shoot(page, "login-desktop")
    page.get_by_role("link", name="Sign up").click()
    page.fill("#id_username", USER)
    page.fill("#id_email", "ada@lab.org")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    shoot(page, "signup-desktop")
    page.get_by_role("button", name="Sign up").click()
    page.get_by_text(f"Welcome, {USER}").wait_for()
    page.get_by_role("button", name="Log out").click()
    assert urlsplit(page.url).path == "/accounts/login/"
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text(f"Welcome, {USER}").wait_for()
    shoot(page, "home-empty-desktop")


def test_a_bad_request_is_refused_beside_its_field(page):
    nav(page, "Submit")
    page.set_input_files("#id_executable", upload("fit.py", FIT))
    page.fill("#id_request_memory", "lots")
    page.get_by_role("button", name="Submit", exact=True).click()
    error = page.locator('[data-field="request_memory"] .invalid-feedback')
    assert "lots" in error.inner_text()
    assert "has-error" in page.locator('[data-field="request_memory"]').get_attribute("class")
    shoot(page, "submit-error-desktop")


def test_submit_a_python_job_with_a_data_file_watch_it_and_collect_its_output(page, facts, tmp_path):
    nav(page, "Submit")
    page.set_input_files("#id_executable", upload("fit.py", FIT))
    page.set_input_files("#id_data", upload("data.csv", b"1\n2\n3.5\n"))
    page.fill("#id_name", "fit-browser")
    shoot(page, "submit-desktop")
    page.get_by_role("button", name="Submit", exact=True).click()
    job_id = job_id_from(page.url)
    facts["job_path"] = urlsplit(page.url).path

    # The page updates itself (htmx polling): no reload here.
    page.locator('[data-testid="job-state"]', has_text="succeeded").wait_for(timeout=120_000)
    assert "read 3 numbers, total 6.5" in page.locator('[data-testid="stdout"]').inner_text()

    nav(page, "Completed")
    row = page.locator("tr", has=page.get_by_role("link", name=str(job_id), exact=True))
    assert "fit-browser" in row.inner_text() and "succeeded" in row.inner_text()
    shoot(page, "completed-desktop")
    row.get_by_role("link", name=str(job_id), exact=True).click()
    assert job_id_from(page.url) == job_id
    assert page.locator('[data-testid="exit-code"]').inner_text() == "0"
    assert "read 3 numbers, total 6.5" in page.locator('[data-testid="stdout"]').inner_text()
    page.get_by_role("tab", name=re.compile(r"^stderr")).click()
    assert "warming up" in page.locator('[data-testid="stderr"]').inner_text()
    page.get_by_role("tab", name="stdout").click()
    shoot(page, "job-done-desktop")

    with page.expect_download() as download:
        page.locator('[data-testid="output-file"]', has_text="result.txt").click()
    saved = tmp_path / "result.txt"
    download.value.save_as(saved)
    assert saved.read_text() == "total=6.5\n"


def test_submit_a_whole_submission_file_with_its_files(page):
    nav(page, "Submit")
    page.get_by_text("A submission file").click()
    assert page.locator("#id_executable").is_hidden()
    text = b"executable = fit.py\ndata = data.csv\nname = from-file\n"
    page.set_input_files("#id_submission", upload("job.txt", text))
    page.set_input_files("#id_files", [upload("fit.py", FIT), upload("data.csv", b"10\n20\n")])
    page.get_by_role("button", name="Submit", exact=True).click()
    assert "/jobs/" in page.url, page.locator("[data-error-for]").all_inner_texts()
    page.locator('[data-testid="job-state"]', has_text="succeeded").wait_for(timeout=120_000)
    assert "read 2 numbers, total 30.0" in page.locator('[data-testid="stdout"]').inner_text()


def test_submit_an_htcondor_file_with_its_folder_chosen_whole(page, tmp_path):
    # The folder picker (webkitdirectory): portal.js sends each file's path, so `data/` finds data's files.
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "fit.py").write_bytes(FIT)
    (project / "data" / "data.csv").write_bytes(b"1\n4\n")
    text = b"executable = fit.py\ntransfer_input_files = data/\nname = from-folder\nqueue\n"
    nav(page, "Submit")
    page.get_by_text("A submission file").click()
    page.set_input_files("#id_submission", upload("job.sub", text))
    page.set_input_files("#id_folder", str(project))
    page.get_by_role("button", name="Submit", exact=True).click()
    assert "/jobs/" in page.url, page.locator("[data-error-for], .invalid-feedback").all_inner_texts()
    page.locator('[data-testid="job-state"]', has_text="succeeded").wait_for(timeout=120_000)
    assert "read 2 numbers, total 5.0" in page.locator('[data-testid="stdout"]').inner_text()


def test_times_show_in_the_viewers_time_zone(page):
    stamp = page.locator("time[datetime]").first
    assert VIEWER_ZONE in stamp.get_attribute("title")
    iso = stamp.get_attribute("datetime")
    assert stamp.inner_text() != iso[:19].replace("T", " ") + " UTC", "still the server's text"


def test_queue_shows_running_and_waiting_jobs_live_and_cancel_stops_them(page, phone):
    nav(page, "Submit")
    page.set_input_files("#id_executable", upload("nap.py", NAP))
    page.fill("#id_copies", "3")
    page.fill("#id_name", "nap-$(Process)")
    page.get_by_role("button", name="Submit", exact=True).click()
    assert urlsplit(page.url).path == "/queue/"

    # Two nodes of one slot each: two run, the third waits with a reason; the page sees it live.
    page.locator('[data-testid="running-count"]', has_text="2").wait_for(timeout=60_000)
    page.locator('[data-testid="waiting-count"]', has_text="1").wait_for(timeout=30_000)
    running = page.locator("#queue-live tbody").first.inner_text()
    assert "node-1" in running and "node-2" in running
    assert page.locator("#queue-live td.dct-reason").first.inner_text().strip()
    shoot(page, "queue-desktop")
    nav(page, "Nodes")
    page.locator("tr[data-node=node-1]", has_text="busy").wait_for(timeout=30_000)
    shoot(page, "nodes-desktop")
    nav(page, "Home")
    shoot(page, "home-desktop")
    page.get_by_role("link", name="nap-0").click()
    page.locator('[data-testid="job-state"]', has_text="running").wait_for()
    # The stdout tail grows on the page while the job runs.
    page.locator('[data-testid="stdout"]', has_text="tick 4").wait_for(timeout=30_000)
    shoot(page, "job-running-desktop")
    for name, path in (("queue", "/queue/"), ("nodes", "/nodes/"), ("home", "/"), ("job-running", page.url)):
        phone.goto(path)
        fits_a_phone(phone, name)
        shoot(phone, f"{name}-busy-phone")

    for name in ("nap-2", "nap-1", "nap-0"):
        nav(page, "Home")
        page.get_by_role("link", name=name).click()
        page.get_by_role("button", name="Cancel").click()
        page.locator('[data-testid="job-state"]', has_text="cancelled").wait_for(timeout=30_000)


def test_every_page_is_within_two_clicks_of_home(page):
    for name, path in PAGES.items():
        nav(page, "Home")
        nav(page, name)  # one click
        assert urlsplit(page.url).path == path, name
        hrefs = set(page.eval_on_selector_all("#dct-nav a", "els => els.map(e => new URL(e.href).pathname)"))
        assert set(PAGES.values()) <= hrefs, f"{name} lacks a link to some page"
    # A job and its downloads: home -> job (one click) -> file (two).
    nav(page, "Home")
    page.get_by_role("link", name="fit-browser").click()
    assert page.locator('[data-testid="output-file"]').count() == 1
    assert page.get_by_role("link", name="stdout", exact=True).count() == 1


def test_usage_page_has_the_fair_share_table_and_a_chart(page, cluster):
    nav(page, "Usage")
    table = page.locator('[data-testid="usage-table"]').inner_text()
    assert USER in table
    drawn = page.evaluate("() => !!window.Chart && !!window.Chart.getChart(document.getElementById('usage-chart'))")
    assert drawn
    assert page.locator('[data-testid="group-table"]').count() == 0, "no groups: no group table"
    # With an accounting group: its table, and the chart by group drawn beside the users' one.
    cluster.cli("group", "add", "lab", "--share", "2")
    cluster.cli("group", "member", "lab", USER)
    nav(page, "Usage")
    groups = page.locator('[data-testid="group-table"]').inner_text()
    assert "lab" in groups and USER in groups, groups
    drawn = page.evaluate(
        "() => !!window.Chart && !!window.Chart.getChart(document.getElementById('usage-group-chart'))"
    )
    assert drawn
    shoot(page, "usage-desktop")


def test_every_page_fits_a_phone(phone, facts):
    for name, path in [*PAGES.items(), ("Job", facts["job_path"])]:
        phone.goto(path)
        fits_a_phone(phone, name)
        shoot(phone, f"{name.lower()}-phone")
    phone.locator(".navbar-toggler").click()
    phone.locator("#dct-nav.show").wait_for()
    phone.locator("#dct-nav").get_by_role("link", name="Queue", exact=True).wait_for(state="visible")
    shoot(phone, "menu-phone")
    nav(phone, "Queue")
    assert urlsplit(phone.url).path == "/queue/"


def test_staff_see_everyones_jobs_and_the_flower_link(browser, portal, cluster, requests_seen):
    cluster.cli("adduser", "boss", "--staff", input="staff-password-99\n")
    context = browser.new_context(base_url=portal, viewport=DESKTOP, timezone_id=VIEWER_ZONE)
    context.on("request", lambda r: requests_seen.append(r.url))
    try:
        staff = context.new_page()
        staff.goto("/accounts/login/")
        staff.fill("input[name=username]", "boss")
        staff.fill("input[name=password]", "staff-password-99")
        staff.get_by_role("button", name="Log in").click()
        flower = staff.locator("#dct-nav").get_by_role("link", name="Flower", exact=True)
        assert flower.get_attribute("href") == "/flower/"
        nav(staff, "Completed")
        assert "fit-browser" in staff.locator("table").inner_text() and USER in staff.locator("table").inner_text()
        shoot(staff, "completed-staff-desktop")
    finally:
        context.close()


def test_no_request_left_this_machine(requests_seen):
    assert any("/static/vendor/bootstrap" in url for url in requests_seen), "the pages were not styled"
    assert any("/static/vendor/htmx" in url for url in requests_seen)
    outside = sorted({url for url in requests_seen if urlsplit(url).hostname not in LOCAL_HOSTS})
    assert not outside, f"requests left localhost: {outside}"


def test_server_logged_no_errors(cluster):
    log = (cluster.logs / "web.log").read_text()
    assert "Traceback" not in log, log[-4000:]
    assert not re.search(r'" [45]\d\d ', log), "a page asked for something missing or failed:\n" + log[-4000:]
