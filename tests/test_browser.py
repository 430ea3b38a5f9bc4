"""The web page (web/) in real headless Chromium, calling the real function.

Mostly the page is served from one loopback origin and the function from another,
so every call is cross-origin and the browser's CORS rules decide what the page
may read; the function also serves the page itself at its own URL (same origin).
Screenshots land in artifacts/ (not committed); the tests read sizes, colours
and texts from the rendered page and from screenshots' pixels.
"""

import base64
import functools
import http.server
import threading
from urllib.parse import quote

import numpy as np
from sklearn.datasets import load_iris

import pytest
from playwright.sync_api import expect, sync_playwright

from tests import oracle
from tests.models import COLOURS, SOILS, TREE_MODELS
from harness import ROOT, FunctionServer, free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's package; Playwright never downloads a browser here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = ROOT / "artifacts"
SETOSA = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
BAD_LINE = (192, 57, 43)  # style.css --bad-line, #c0392b: a refused field's border
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


def pixel(page, png: bytes, x: int, y: int) -> tuple:
    """The (r, g, b) of a screenshot's pixel, decoded by the browser in a blank tab."""
    blank = page.context.new_page()
    try:
        return tuple(blank.evaluate("""async ([data, x, y]) => {
            const image = new Image();
            image.src = "data:image/png;base64," + data;
            await image.decode();
            const canvas = document.createElement("canvas");
            canvas.width = image.width;
            canvas.height = image.height;
            const context = canvas.getContext("2d");
            context.drawImage(image, 0, 0);
            return Array.from(context.getImageData(x, y, 1, 1).data.slice(0, 3));
        }""", [base64.b64encode(png).decode(), x, y]))
    finally:
        blank.close()


def label(name: str) -> str:
    """A feature's name as the form labels it (docs/clients.md): "sepal_length", "Sepal length"."""
    return name.replace("_", " ").capitalize()


def test_form_is_built_from_the_metadata(page, site, shop):
    open_page(page, site, shop.url)
    data = load_iris().data  # the training range, from the data set rather than model.json
    for j, name in enumerate(oracle.NAMES):
        field = page.get_by_label(f"{label(name)} (cm)")  # a real <label for>: screen readers
        expect(field).to_be_visible()
        expect(field).to_have_accessible_description(
            f"Training data: {data[:, j].min():g}–{data[:, j].max():g} cm; "
            "allowed: > 0 and ≤ 100")
    expect(page.get_by_role("heading", level=1)).to_have_text("Iris species predictor")
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

    expect(page.locator("#answer")).to_have_text(species)
    expect(page.locator("#answer-key")).to_have_text("Species")
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
    expect(page.locator("#answer")).to_have_text("setosa")
    expect(page.locator("#warnings")).to_be_visible()
    # The function's warning, in the words of the form: "Sepal length", not "sepal_length".
    expect(page.locator("#warning-list li")).to_have_text(
        [oracle.TUTORIAL_WARNING.replace("sepal_length", "Sepal length")])
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
    field = page.locator("input[name=petal_width]")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    for other in ("sepal_length", "sepal_width", "petal_length"):
        expect(page.locator(f"input[name={other}]")).not_to_have_attribute("aria-invalid", "true")
    # It looks invalid while focused, not only ringed: a 2 px red border, in the pixels too.
    style = field.evaluate("e => { const s = getComputedStyle(e); "
                           "return [s.borderLeftWidth, s.borderLeftColor]; }")
    assert style == ["2px", f"rgb{BAD_LINE}"]
    box = field.bounding_box()
    assert pixel(page, field.screenshot(), 0, int(box["height"] / 2)) == BAD_LINE
    assert pixel(page, page.locator("input[name=petal_length]").screenshot(), 0,
                 int(box["height"] / 2)) != BAD_LINE
    screenshot(page, "bad-value")
    # Typing in it again clears the mark.
    field.fill("0.2")
    expect(field).not_to_have_attribute("aria-invalid", "true")


def test_an_empty_field_is_named_before_calling(page, site, shop):
    open_page(page, site, shop.url)
    fill(page, {k: v for k, v in SETOSA.items() if k != "petal_length"})
    page.get_by_role("button", name="Predict species").click()
    expect(page.get_by_role("alert")).to_contain_text("Enter the petal length (cm).")
    expect(page.locator("input[name=petal_length]")).to_be_focused()
    expect(page.locator("input[name=petal_length]")).to_have_attribute("aria-invalid", "true")


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
    expect(page.locator("#answer")).to_have_text("setosa")
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
    expect(page.locator("#row")).to_be_hidden()  # no lone disabled button in an empty card
    screenshot(page, "cors-refused")
    # The refusal was Chromium's, not the page guessing: it logged the CORS block.
    assert any("CORS policy" in text for text in console), console


@pytest.mark.parametrize("api, message", [
    (f"http://127.0.0.1:{free_port()}", "Could not reach the service"),
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
    expect(page.locator("#answer")).to_have_text("setosa")


# A virginica whose measurements pull both ways: its sepals away from virginica, its petals towards.
WHY_FLOWER = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}


def contributions(flower: dict) -> tuple:
    """scikit-learn's class for a flower and coef_[k, j] * (x_j - mean_j), the mean of load_iris."""
    x = np.array([list(flower.values())])
    k = oracle.estimator().predict(x)[0]
    return k, (oracle.estimator().coef_[k] * (x - load_iris().data.mean(axis=0)))[0]


def why_bars(page, flower: dict) -> list:
    """Predict a flower on the page; (row locator, fill box, track box) per "why" bar."""
    fill(page, flower)
    # A second answer has as many bars as the first: without this, the count below could
    # be the first answer's, read while the page replaces its bars (a box of None).
    page.locator("#why").evaluate("list => list.replaceChildren()")
    page.get_by_role("button", name="Predict species").click()
    expect(page.locator("#why li")).to_have_count(len(flower))
    return [(row, row.locator(".why-fill").bounding_box(), row.locator(".why-track").bounding_box())
            for row in page.locator("#why li").all()]


def test_why_shows_one_signed_bar_per_measurement(page, site, shop):
    """Signs and lengths from scikit-learn, on the one scale the axis states."""
    k, pulls = contributions(WHY_FLOWER)
    assert (pulls < 0).any() and (pulls > 0).any()  # the flower shows both
    species = oracle.CLASSES[k]
    open_page(page, site, shop.url)
    bars = why_bars(page, WHY_FLOWER)
    expect(page.locator("#answer")).to_have_text(species)
    expect(page.locator("#why-title")).to_have_text(f"Why {species}: each feature's pull")
    expect(page.get_by_role("list", name=f"Why {species}: each feature's pull")
           .get_by_role("listitem")).to_have_count(len(WHY_FLOWER))
    # The scale: the axis's ends, the same number both sides; every bar fits within it, and
    # it is no more than 2.5x the longest pull (the next round number up).
    high = float(page.locator("#why-high").inner_text().lstrip("+"))
    assert page.locator("#why-low").inner_text() == "\u2212" + f"{high:g}"
    assert np.abs(pulls).max() <= high <= 2.5 * np.abs(pulls).max()
    for (row, fill_box, track), name, c in zip(bars, WHY_FLOWER, pulls):
        expect(row.locator(".why-name")).to_contain_text(label(name))
        direction = "towards" if c > 0 else "away from"
        sign = "+" if c > 0 else "\u2212"
        # What a screen reader says: the signed value and which way it pulls.
        expect(row.locator(".why-value")).to_have_text(f"{sign}{abs(c):.2f} {direction} {species}")
        expect(row).to_have_class("why-bar toward" if c > 0 else "why-bar away")
        middle = track["x"] + track["width"] / 2
        if c > 0:  # drawn from the centre line rightwards, or leftwards
            assert fill_box["x"] == pytest.approx(middle, abs=1)
        else:
            assert fill_box["x"] + fill_box["width"] == pytest.approx(middle, abs=1)
        # Half the track is the axis's end: 1 px of layout rounding on a bar ~200 px long.
        assert fill_box["width"] == pytest.approx(abs(c) / high * track["width"] / 2, abs=1)
    screenshot(page, "why")


def test_why_bars_of_two_answers_say_their_scale_and_baseline(page, site, shop):
    """Issue 17: a small pull must not fill a bar as a large one does, and the bars say
    what they are measured against: each measurement beside the training mean."""
    open_page(page, site, shop.url)
    versicolor = dict(zip(oracle.NAMES, oracle.FLOWERS["versicolor"]))  # both petal bars away
    scales, widths = [], []
    for flower in (versicolor, WHY_FLOWER):
        _, pulls = contributions(flower)
        bars = why_bars(page, flower)
        expect(page.locator("#why li").first).to_contain_text(label(oracle.NAMES[0]))
        scale = float(page.locator("#why-high").inner_text().lstrip("+"))
        scales.append(scale)
        widths.append([box["width"] / (track["width"] / 2) * scale
                       for _, box, track in bars])  # each bar read back in score units
        np.testing.assert_allclose(widths[-1], np.abs(pulls), atol=scale * 0.01)
        means = load_iris().data.mean(axis=0)
        for (row, _, _), name, x, mean in zip(bars, flower, flower.values(), means):
            # The mean at the data's precision: iris is measured to 1 mm.
            expect(row.locator(".why-base")).to_have_text(
                f"{x:g} cm vs average {round(mean, 1):g} cm")
    expect(page.locator("#why-help")).to_contain_text("the average training row")
    assert scales[0] != scales[1]  # each answer states its own scale
    screenshot(page, "why-versicolor")


@pytest.mark.parametrize("typed, expected", [
    ({"sepal_length": "7,0", "sepal_width": "3,2", "petal_length": "4,7", "petal_width": "1,4"},
     oracle.FLOWERS["versicolor"]),
    ({"sepal_length": "5,1", "sepal_width": "3.5", "petal_length": "1,4", "petal_width": ",2"},
     [5.1, 3.5, 1.4, 0.2]),
])
def test_a_decimal_comma_is_a_decimal_point(page, site, shop, typed, expected):
    """Issue 17: "5,1" typed in Chromium became 51; it must be 5.1."""
    open_page(page, site, shop.url)
    for name, text in typed.items():
        page.locator(f"input[name={name}]").press_sequentially(text)  # as a keyboard types it
    page.get_by_role("button", name="Predict species").click()
    (species,) = oracle.species([expected])
    expect(page.locator("#answer")).to_have_text(species)
    (probabilities,) = oracle.probabilities([expected])
    expect(page.locator("#confidence")).to_have_text(
        f"The model gives it a {percent(probabilities[species])} probability.")
    for name, text in typed.items():  # the fields show what was read: a point, not a comma
        expect(page.locator(f"input[name={name}]")).to_have_value(text.replace(",", "."))
    expect(page.locator("#warnings")).to_be_hidden()  # 70, 32, 47, 14 would have warned


@pytest.mark.parametrize("text", ["1.234,5", "5,1,2", "5 1", "five"])
def test_an_unreadable_number_is_refused_before_calling(page, site, shop, text):
    open_page(page, site, shop.url)
    fill(page, SETOSA)
    requests = []
    page.on("request", lambda request: requests.append(request.method))
    field = page.locator("input[name=sepal_width]")
    field.fill(text)
    page.get_by_role("button", name="Predict species").click()
    expect(page.get_by_role("alert")).to_contain_text(
        f'The sepal width is not a number: "{text}". Use digits and one decimal point or comma')
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_be_focused()
    assert "POST" not in requests


def test_a_failed_metadata_load_says_what_to_check(page, site):
    api = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    open_page(page, site, api)
    alert = page.get_by_role("alert")
    expect(alert.get_by_role("heading", level=2)).to_have_text(
        "The page could not load the model's description")
    checks = alert.get_by_role("listitem")
    expect(checks).to_have_count(4)
    for item, words in zip(checks.all(), (f"this page calls {api}/", "make serve",
                                          "ALLOWED_ORIGINS", "online")):
        expect(item).to_contain_text(words)
    expect(page.locator("#row")).to_be_hidden()
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
    # The card holds the explanation: as wide as the page's column, tall enough for it.
    card, main = alert.bounding_box(), page.locator("main").bounding_box()
    assert card["width"] >= main["width"] * 0.9
    assert card["height"] >= 4 * checks.first.bounding_box()["height"]
    screenshot(page, "load-failed")


@pytest.fixture(scope="module")
def home():
    """The function allowing no page's origin: only its own page, on its own origin, may call."""
    with FunctionServer(env={"ALLOWED_ORIGINS": "https://shop.example"}) as server:
        yield server


def test_the_functions_own_url_is_the_page(page, home):
    """Issue 17: a browser opening the function's URL gets the page, which works as it is:
    same origin (no CORS), no ?api=, under its strict Content-Security-Policy."""
    violations = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    response = page.goto(home.url)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    expect(page.locator("#endpoint")).to_have_text(home.url + "/")
    fill(page, dict(zip(oracle.NAMES, oracle.FLOWERS["virginica"])))
    page.get_by_role("button", name="Predict species").click()
    expect(page.locator("#answer")).to_have_text("virginica")
    (probabilities,) = oracle.probabilities([oracle.FLOWERS["virginica"]])
    expect(page.locator("#bars li .bar-value")).to_have_text(
        [percent(probabilities[c]) for c in oracle.CLASSES])
    # The style sheet applied (from /style.css, not inline): the card's rounded white box.
    assert page.locator("#result").evaluate("e => getComputedStyle(e).backgroundColor") \
        == "rgb(255, 255, 255)"
    assert not violations, violations
    screenshot(page, "own-url")


# The garden table's categories, as tests/models.py draws them.
CATEGORIES = {"colour": COLOURS, "soil": SOILS}


@pytest.fixture(scope="module", params=["garden_kind", "diabetes", "garden_kind_boosted"])
def other(request, trained_models):
    """A model that is not iris, served: the garden's (categories, missing values), diabetes
    (regression) or the garden's HistGradientBoosting (explained by TreeSHAP), trained by
    tests/models.py; with scikit-learn's own pipeline, the oracle."""
    import csv

    import joblib
    trained = trained_models[request.param]
    header = next(csv.reader(trained.csv.open()))
    with FunctionServer(env={"MODEL_PATH": str(trained.path)}) as server:
        yield (trained.metadata["name"], request.param), server, joblib.load(trained.path), \
            header, trained.target


def test_the_page_follows_any_model(page, site, other):
    (name, model), server, pipeline, header, target = other
    meta = server.call("GET").json()
    features = [h for h in header if h != target]
    open_page(page, site, server.url)
    expect(page.get_by_role("heading", level=1)).to_have_text(
        f"{label(name)} {target} predictor")
    expect(page.locator("#fields input")).to_have_count(len(features))
    row = {}
    for feature in meta["features"]:
        caption = label(feature["name"]) + (" (optional)" if feature["missing"] else "")
        field = page.get_by_label(caption, exact=True)
        expect(field).to_be_visible()
        if feature["type"] == "category":  # the training categories to pick from, others allowed
            options = page.locator(f"#{field.get_attribute('list')} option")
            assert sorted(options.evaluate_all("os => os.map(o => o.value)")) \
                == sorted(CATEGORIES[feature["name"]])
            row[feature["name"]] = "purple"  # never seen in training: a warning
        else:
            low, high = feature["min"], feature["max"]
            row[feature["name"]] = round(low + 0.3 * (high - low), 4)
        field.fill(str(row[feature["name"]]))
    page.get_by_role("button", name=f"Predict {target}").click()
    X = np.array([[row[f] for f in features]], dtype=object)
    expect(page.locator("#answer-key")).to_have_text(label(target))
    if meta["task"] == "regression":
        expect(page.locator("#answer")).to_have_text(f"{pipeline.predict(X)[0]:.6g}")
        expect(page.locator("#probabilities")).to_be_hidden()
    else:
        (k,) = pipeline.predict(X)
        expect(page.locator("#answer")).to_have_text(meta["classes"][k])
        expect(page.locator("#bars li .bar-value")).to_have_text(
            [percent(round(p, 6)) for p in pipeline.predict_proba(X)[0]])
        expect(page.locator("#warning-list li")).to_contain_text(["Colour"])
        assert "colour" not in page.locator("#warning-list").inner_text().split()[0]
    expect(page.locator("#why li")).to_have_count(len(features))  # explained per input
    trees = model in TREE_MODELS
    expect(page.locator("#why-help")).to_contain_text(
        "expected" if trees else "the average training row")
    if trees:  # measured from the expected score, not from each feature's mean
        expect(page.locator("#why .why-base").first).not_to_contain_text("vs average")
    screenshot(page, f"model-{model}")


@pytest.fixture(scope="module")
def cars(tmp_path_factory):
    """A table of the kind users bring: whole-number years, weights in kg (a unit given to
    train.py), a text category; served."""
    import train
    from tests.models import write_csv
    directory = tmp_path_factory.mktemp("cars")
    rows = [[1970 + i % 13, round(1500 + 37.5 * (i % 17), 1), ("usa", "usa", "japan")[i % 3],
             round(30 - (i % 13) * 0.4 - (i % 17) * 0.3, 1)] for i in range(130)]
    csv = write_csv(directory / "cars.csv", ["year", "weight", "origin", "mpg"], rows)
    model = directory / "cars.joblib"
    assert train.main(["--csv", str(csv), "--target", "mpg", "--unit", "weight=kg",
                       "--output", str(model)]) == 0
    with FunctionServer(env={"MODEL_PATH": str(model)}) as server:
        yield server, np.array([row[:3] for row in rows], dtype=object)


def test_the_form_keeps_the_datas_precision_and_units(page, site, cars):
    """A year's mean of 1976 reads 1976 (not 1980 or 2000: significant figures); a range
    carries its unit; a category shows its most common value as a placeholder."""
    server, rows = cars
    open_page(page, site, server.url)
    years, weights = rows[:, 0].astype(float), rows[:, 1].astype(float)
    year = page.get_by_label("Year", exact=True)
    assert years.mean() == 1976
    expect(year).to_have_attribute("placeholder", "e.g. 1976")
    expect(year).to_have_accessible_description("Training data: 1970–1982")
    weight = page.get_by_label("Weight (kg)", exact=True)
    expect(weight).to_have_accessible_description(
        f"Training data: {weights.min():g}–{weights.max():g} kg")
    expect(weight).to_have_attribute("placeholder", f"e.g. {round(weights.mean(), 1):g} kg")
    expect(page.get_by_label("Origin", exact=True)).to_have_attribute("placeholder", "e.g. usa")


def test_every_refused_field_is_named(page, site, cars):
    server, _ = cars
    open_page(page, site, server.url)
    page.get_by_label("Weight (kg)", exact=True).fill("heavy")
    page.get_by_role("button", name="Predict mpg").click()
    alert = page.get_by_role("alert")
    for words in ("Enter the year.", 'The weight is not a number: "heavy".',
                  "Enter the origin."):
        expect(alert).to_contain_text(words)
    for name in ("year", "weight", "origin"):
        expect(page.locator(f"input[name={name}]")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("input[name=year]")).to_be_focused()  # the first of them
