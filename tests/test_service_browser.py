"""The web page in a real browser: Debian's chromium, driven by Playwright, against ``deephash serve`` on loopback.

Set DEEPHASH_SERVICE_SCREENSHOT=docs/img/service.png to keep a screenshot of the results page.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DEEPHASH_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Python playwright is not installed (pip install playwright==1.65.2; never 'playwright install')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no chromium at {CHROMIUM} (apt-get install -y chromium)"
    return None


if _missing():
    if os.environ.get("DEEPHASH_REQUIRE_BROWSER"):  # CI sets this: a missing browser must fail, not skip
        raise RuntimeError(_missing())
    pytest.skip(_missing(), allow_module_level=True)

from playwright import sync_api  # noqa: E402

from service_helpers import Server, copy_index  # noqa: E402

IDLE = "document.querySelector('#results .hit') && !document.querySelector('#results').hasAttribute('aria-busy')"


@pytest.fixture(scope="module")
def server(demo_index, tmp_path_factory):
    d = tmp_path_factory.mktemp("browser")
    srv = Server(copy_index(demo_index, d / "idx"), d / "server.log").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1200, "height": 820})
        pg.set_default_timeout(60_000)
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors
        yield pg
        browser.close()


def _settle(pg):
    pg.wait_for_function(IDLE)
    pg.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth > 0)")


def test_upload_shows_results_and_a_click_searches_again(server, page, small_cifar):
    page.goto(server.url + "/")
    page.wait_for_selector("#results .hit")  # examples from the index
    assert "300 images" in page.inner_text("#stats")

    query = sorted((small_cifar / "test" / "ship").glob("*.jpg"))[1]
    page.set_input_files("#file", str(query))
    page.wait_for_function("document.querySelector('#query-caption').textContent.includes('uploaded')")
    _settle(page)
    hits = page.locator("#results .hit")
    assert hits.count() == 12  # the k slider's default
    assert page.locator("#message").is_hidden()
    assert "backbone" in page.inner_text("#timings")
    first = hits.nth(0).inner_text()
    assert "d=" in first
    labels = [t.split("\n")[0] for t in hits.all_inner_texts()]
    assert set(labels) <= {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}
    if os.environ.get("DEEPHASH_SERVICE_SCREENSHOT"):
        page.screenshot(path=os.environ["DEEPHASH_SERVICE_SCREENSHOT"], full_page=True)

    target = hits.nth(3)
    target_id = target.get_attribute("data-id")
    with page.expect_response(lambda r: f"/api/search/{target_id}?" in r.url and r.status == 200):
        target.click()
    page.wait_for_function(f"document.querySelector('#query-caption').textContent.includes('#{target_id}')")
    _settle(page)
    # the clicked image is its own nearest neighbour: Hamming 0 (and, with stored features, feature distance 0)
    first = page.locator("#results .hit").nth(0)
    assert first.get_attribute("data-id") == target_id
    assert first.inner_text().split("\n")[1].split(" ")[0] == "d=0"

    # the k slider and the re-rank switch run the query again
    with page.expect_response(lambda r: "/api/search/" in r.url and "k=5" in r.url and "rerank=true" in r.url):
        page.check("#rerank")
        page.locator("#k").fill("5")
    _settle(page)
    assert page.locator("#results .hit").count() == 5
    assert page.errors == []


def test_bad_files_get_clear_messages(server, page, tmp_path):
    page.goto(server.url + "/")
    page.wait_for_selector("#results .hit")
    txt = tmp_path / "notes.txt"
    txt.write_text("not an image")
    page.set_input_files("#file", str(txt))
    assert "notes.txt is not an image" in page.inner_text("#message")
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"definitely not a jpeg" * 20)
    page.set_input_files("#file", str(fake))
    page.wait_for_function("document.querySelector('#message').textContent.includes('not a readable image')")
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8" + b"0" * (11 * 2**20))
    page.set_input_files("#file", str(big))
    page.wait_for_function("document.querySelector('#message').textContent.includes('more than the limit')")
    assert "huge.jpg is 11.0 MB" in page.inner_text("#message")


def test_a_read_key_goes_only_in_headers_never_in_a_url(page, demo_index, tmp_path):
    """Issue 12 item 4: with reads keyed, the page asks for the key and sends it as X-API-Key on every
    request (thumbnails included, shown from blob: URLs); no URL it requests carries the key."""
    from service_helpers import KEY

    srv = Server(copy_index(demo_index, tmp_path / "idx"), tmp_path / "server.log", "--api-key", KEY,
                 "--read-key-required").start()
    try:
        # one playwright per process: a fresh context (its own localStorage) of the module's browser
        ctx = page.context.browser.new_context(viewport={"width": 1200, "height": 820})
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        requests: list[tuple[str, str | None]] = []
        pg.on("request", lambda r: requests.append((r.url, r.headers.get("x-api-key"))))
        pg.goto(srv.url + "/")
        pg.wait_for_selector("#key-box:not([hidden])")  # 401 on the stats: the page asks for the key
        pg.fill("#key", KEY)
        pg.press("#key", "Enter")
        pg.dispatch_event("#key", "change")
        _settle(pg)
        assert "300 images" in pg.inner_text("#stats")
        srcs = pg.eval_on_selector_all("#results img", "els => els.map(e => e.src)")
        assert srcs and all(s.startswith("blob:") for s in srcs)
        hit = pg.locator("#results .hit").nth(2)
        hid = hit.get_attribute("data-id")
        hit.click()
        pg.wait_for_function(f"document.querySelector('#query-caption').textContent.includes('#{hid}')")
        _settle(pg)
        assert pg.locator("#results .hit").nth(0).get_attribute("data-id") == hid
        ctx.close()
    finally:
        srv.stop()
    api_reqs = [(u, k) for u, k in requests if "/api/" in u]
    assert any("/thumb" in u for u, _ in api_reqs) and any("/api/search/" in u for u, _ in api_reqs)
    assert all(KEY not in u and "key=" not in u for u, _ in requests)
    assert all(k == KEY for u, k in api_reqs if "/api/stats" not in u)  # the first stats call came before the key
    assert KEY not in (tmp_path / "server.log").read_text()
