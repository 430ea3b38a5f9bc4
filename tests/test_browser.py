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

from tests import oracle
from harness import ROOT, FunctionServer, free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = ROOT / "artifacts"
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
API_KEY = "AIzaSyTest-browser-key-0123456789abcdefg"  # the shape of a Google API key


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


def open_page(page, site: str, api: str, key: str | None = None):
    page.goto(f"{site}/index.html?api={quote(api, safe='')}"
              + (f"&key={quote(key, safe='')}" if key else ""))


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


@pytest.mark.parametrize("species", oracle.CLASSES)
def test_keyboard_only_prediction_shows_the_species(page, site, shop, species):
    flower = dict(zip(oracle.NAMES, oracle.FLOWERS[species]))
    open_page(page, site, shop.url)
    page.locator("input[name=sepal_length]").focus()
    for name, value in flower.items():  # Tab walks the fields in reading order
        expect(page.locator(f"input[name={name}]")).to_be_focused()
        page.keyboard.type(str(value))
        page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Predict species")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.locator("#species")).to_have_text(species)
    (probabilities,) = oracle.probabilities([oracle.FLOWERS[species]])  # scikit-learn's
    rows = page.locator("#bars li")
    expect(rows).to_have_count(len(oracle.CLASSES))
    for row, name in zip(rows.all(), oracle.CLASSES):
        p = probabilities[name]
        expect(row.locator(".bar-name")).to_have_text(name)
        expect(row.locator(".bar-value")).to_have_text(percent(p))
        width = row.locator(".bar-fill").evaluate("fill => parseFloat(fill.style.width)")
        assert width == pytest.approx(p * 100, abs=0.005)  # the page rounds to 0.01 %
    expect(page.locator("#bars li.chosen .bar-name")).to_have_text(species)
    expect(page.locator("#warnings")).to_be_hidden()
    screenshot(page, f"prediction-{species}")


def test_out_of_range_values_show_the_warning(page, site, shop):
    open_page(page, site, shop.url)
    fill(page, dict(zip(oracle.NAMES, oracle.TUTORIAL)))
    page.get_by_role("button", name="Predict species").click()
    expect(page.locator("#species")).to_have_text("setosa")
    expect(page.locator("#warnings")).to_be_visible()
    expect(page.locator("#warning-list li")).to_have_text([oracle.TUTORIAL_WARNING])
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


def calls_to(page, url: str) -> list:
    """The page's requests to the function at `url` from now on, as Chromium sent them."""
    requests = []
    page.on("request", lambda request: requests.append(request)
            if request.url.startswith(url) else None)
    return requests


def test_an_api_key_goes_in_x_api_key_on_every_call(page, site, shop):
    # ?key=KEY, as a page calling the function through API Gateway is given (docs/gateway.md).
    # The header makes every call cross-origin "non-simple": the function's preflight must
    # allow it, or Chromium blocks the call and the species never shows.
    requests = calls_to(page, shop.url)
    open_page(page, site, shop.url, API_KEY)
    fill(page, SETOSA)
    page.get_by_role("button", name="Predict species").click()
    expect(page.locator("#species")).to_have_text("setosa")
    assert [r.method for r in requests] == ["GET", "POST"]
    assert [r.all_headers().get("x-api-key") for r in requests] == [API_KEY, API_KEY]
    assert requests[1].all_headers()["content-type"] == "application/json"


def test_no_api_key_no_x_api_key_header(page, site, shop):
    requests = calls_to(page, shop.url)
    open_page(page, site, shop.url)
    expect(page.get_by_role("button", name="Predict species")).to_be_enabled()
    assert [r.method for r in requests] == ["GET"]
    assert "x-api-key" not in requests[0].all_headers()


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
    expect(page.locator("#species")).to_have_text("setosa")


# A virginica whose measurements pull both ways: its sepals away from virginica, its petals towards.
WHY_FLOWER = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}


def test_why_shows_one_signed_bar_per_measurement(page, site, shop):
    """Signs and lengths from scikit-learn: coef_[k, j] * (x_j - mean_j), the mean of load_iris."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris

    estimator = joblib.load(ROOT / "model.joblib")
    x = np.array([list(WHY_FLOWER.values())])
    k = estimator.predict(x)[0]
    contributions = (estimator.coef_[k] * (x - load_iris().data.mean(axis=0)))[0]
    assert (contributions < 0).any() and (contributions > 0).any()  # the flower shows both

    open_page(page, site, shop.url)
    fill(page, WHY_FLOWER)
    page.get_by_role("button", name="Predict species").click()
    species = load_iris().target_names[k]
    expect(page.locator("#species")).to_have_text(species)
    expect(page.locator("#why-title")).to_have_text(f"Why {species}: each measurement's pull")
    rows = page.get_by_role("list", name=f"Why {species}: each measurement's pull") \
        .get_by_role("listitem")
    expect(rows).to_have_count(len(WHY_FLOWER))
    widths = []
    for row, name, c in zip(rows.all(), WHY_FLOWER, contributions):
        expect(row.locator(".why-name")).to_have_text(name.replace("_", " ").capitalize())
        direction = "towards" if c > 0 else "away from"
        sign = "+" if c > 0 else "\u2212"
        # What a screen reader says: the signed value and which way it pulls.
        expect(row.locator(".why-value")).to_have_text(f"{sign}{abs(c):.2f} {direction} {species}")
        expect(row).to_have_class("why-bar toward" if c > 0 else "why-bar away")
        fill_box = row.locator(".why-fill").bounding_box()
        centre = row.locator(".why-track").bounding_box()
        middle = centre["x"] + centre["width"] / 2
        if c > 0:  # drawn from the centre line rightwards, or leftwards
            assert fill_box["x"] == pytest.approx(middle, abs=1)
        else:
            assert fill_box["x"] + fill_box["width"] == pytest.approx(middle, abs=1)
        widths.append(fill_box["width"])
    # Lengths in proportion to |contribution|, the longest reaching the track's edge;
    # 0.02 of the longest is a few pixels of layout rounding on a bar ~200 px long.
    assert max(widths) == pytest.approx(centre["width"] / 2, abs=1)
    np.testing.assert_allclose(np.array(widths) / max(widths),
                               np.abs(contributions) / np.abs(contributions).max(), atol=0.02)
    screenshot(page, "why")
