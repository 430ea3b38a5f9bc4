"""The web page (web/) in real headless Chromium, calling the real function on another origin.

The page is served from one loopback origin and the function from another, so
every call is cross-origin and the browser's CORS rules decide what the page
may read. Screenshots land in artifacts/ (not committed).
"""

import functools
import http.server
import threading
from urllib.parse import quote

import pytest
from playwright.sync_api import expect, sync_playwright

from harness import ROOT, FunctionServer, free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = ROOT / "artifacts"
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
TUTORIAL = {"sepal_length": 3.0, "sepal_width": 2.0, "petal_length": 1.0, "petal_width": 1.0}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """web/ served by a static file server on its own loopback origin."""
    handler = functools.partial(_QuietHandler, directory=str(ROOT / "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def shop(site):
    """The function allowing exactly the page's origin, as a shop would deploy it."""
    with FunctionServer(env={"ALLOWED_ORIGINS": site}) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh tab that fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 900, "height": 1100})
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda error: errors.append(error))
    yield tab
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def open_page(page, site: str, api: str):
    page.goto(f"{site}/index.html?api={quote(api, safe='')}")


def fill(page, flower: dict):
    for name, value in flower.items():
        page.locator(f"input[name={name}]").fill(str(value))


def percent(p: float) -> str:
    return "<0.1%" if 0 < p < 0.001 else f"{p * 100:.1f}%"


def screenshot(page, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"web-{name}.png", full_page=True)


def test_form_is_built_from_the_metadata(page, site, shop):
    open_page(page, site, shop.url)
    for feature in shop.call("GET").json()["features"]:
        label = f"{feature['name'].replace('_', ' ').capitalize()} ({feature['unit']})"
        field = page.get_by_label(label)  # a real <label for>: what screen readers announce
        expect(field).to_be_visible()
        expect(field).to_have_accessible_description(
            f"Training flowers: {feature['min']:g}–{feature['max']:g} {feature['unit']}")
    expect(page.get_by_role("button", name="Predict species")).to_be_enabled()
    expect(page.locator("#endpoint")).to_have_text(shop.url + "/")


def test_keyboard_only_prediction_matches_the_function(page, site, shop):
    open_page(page, site, shop.url)
    page.locator("input[name=sepal_length]").focus()
    for name, value in SETOSA.items():  # Tab walks the fields in reading order
        expect(page.locator(f"input[name={name}]")).to_be_focused()
        page.keyboard.type(str(value))
        page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Predict species")).to_be_focused()
    page.keyboard.press("Enter")

    truth = shop.call("POST", SETOSA).json()
    expect(page.locator("#species")).to_have_text(truth["species"])
    rows = page.locator("#bars li")
    expect(rows).to_have_count(len(truth["probabilities"]))
    for row, (name, p) in zip(rows.all(), truth["probabilities"].items()):
        expect(row.locator(".bar-name")).to_have_text(name)
        expect(row.locator(".bar-value")).to_have_text(percent(p))
        width = row.locator(".bar-fill").evaluate("fill => parseFloat(fill.style.width)")
        assert width == pytest.approx(p * 100, abs=0.005)
    expect(page.locator("#bars li.chosen .bar-name")).to_have_text(truth["species"])
    expect(page.locator("#warnings")).to_be_hidden()
    screenshot(page, "prediction")


def test_out_of_range_values_show_the_warning(page, site, shop):
    open_page(page, site, shop.url)
    fill(page, TUTORIAL)
    page.get_by_role("button", name="Predict species").click()
    truth = shop.call("POST", TUTORIAL).json()
    expect(page.locator("#species")).to_have_text(truth["species"])
    expect(page.get_by_role("status")).to_contain_text(
        [w["message"] for w in truth["warnings"]])
    screenshot(page, "warning")


def test_a_bad_value_shows_the_functions_error(page, site, shop):
    open_page(page, site, shop.url)
    flower = {**SETOSA, "petal_width": 150}
    fill(page, flower)
    page.get_by_role("button", name="Predict species").click()
    refusal = shop.call("POST", flower)
    assert refusal.status == 400
    expect(page.get_by_role("alert")).to_contain_text(refusal.json()["error"])
    expect(page.locator("#result")).to_be_hidden()
    expect(page.locator("input[name=petal_width]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("input[name=petal_width]")).to_be_focused()
    screenshot(page, "bad-value")


def test_an_empty_field_is_named_before_calling(page, site, shop):
    open_page(page, site, shop.url)
    fill(page, {k: v for k, v in SETOSA.items() if k != "petal_length"})
    page.get_by_role("button", name="Predict species").click()
    expect(page.get_by_role("alert")).to_contain_text("Enter the petal length (cm).")
    expect(page.locator("input[name=petal_length]")).to_be_focused()


def test_a_refused_origin_is_blocked_by_the_browser_and_explained(page, site, shop):
    # The same page from another origin (localhost is not 127.0.0.1 to a browser),
    # which the function's ALLOWED_ORIGINS does not list.
    elsewhere = site.replace("127.0.0.1", "localhost")
    console = []
    page.on("console", lambda message: console.append(message.text))
    open_page(page, elsewhere, shop.url)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("your browser blocked this page from reading its answers")
    expect(alert).to_contain_text(f"does not accept calls from {elsewhere}")
    expect(alert).to_contain_text("ALLOWED_ORIGINS")
    expect(page.get_by_role("button", name="Predict species")).to_be_disabled()
    screenshot(page, "cors-refused")
    # The refusal was Chromium's, not the page guessing: it logged the CORS block.
    assert any("CORS policy" in text for text in console), console


@pytest.mark.parametrize("api, message", [
    (f"http://127.0.0.1:{free_port()}", "Could not reach the iris service"),
    ("javascript:alert(1)", "is not a web address"),
])
def test_an_unusable_endpoint_is_explained(page, site, api, message):
    open_page(page, site, api)
    expect(page.get_by_role("alert")).to_contain_text(message)


def test_a_function_without_its_model_is_explained(page, site, tmp_path):
    with FunctionServer(env={"MODEL_PATH": str(tmp_path / "missing.joblib")}) as broken:
        open_page(page, site, broken.url)
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text(
            f"The service cannot answer right now ({broken.call('GET').json()['error']})")
        expect(page.get_by_role("button", name="Try again")).to_be_visible()


def test_the_page_works_opened_as_a_file(page, live):
    page.goto(f"{(ROOT / 'web' / 'index.html').as_uri()}?api={quote(live.url, safe='')}")
    fill(page, SETOSA)
    page.get_by_role("button", name="Predict species").click()
    expect(page.locator("#species")).to_have_text(live.call("POST", SETOSA).json()["species"])
