"""GET / answers a browser with the page and every other client with the metadata (issue 17).

Real clients with their own default Accept headers: curl, urllib, and a browser's.
tests/test_browser.py opens the function's own URL in Chromium.
"""

import json
import subprocess
import urllib.request

import pytest

from harness import ROOT

CHROMIUM_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                   "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"


@pytest.mark.parametrize("accept, media_type", [
    (None, JSON_TYPE),
    ("*/*", JSON_TYPE),
    ("application/json", JSON_TYPE),
    ("application/json, text/html", JSON_TYPE),         # a tie: the API's answer
    ("text/html;q=0.5, application/json", JSON_TYPE),
    ("text/html;q=0, */*", JSON_TYPE),                   # HTML refused outright
    ("text/*", JSON_TYPE),                               # only a wildcard: not a browser
    ("text/html", HTML_TYPE),
    (CHROMIUM_ACCEPT, HTML_TYPE),
    ("application/xhtml+xml, application/json;q=0.9", HTML_TYPE),
])
def test_accept_chooses_the_page_or_the_metadata(live, accept, media_type):
    reply = live.call("GET", headers={"Accept": accept} if accept else {})
    assert reply.status == 200
    assert reply.headers["content-type"] == media_type
    assert reply.headers["vary"] == "Accept"  # caches must not mix the two
    if media_type == JSON_TYPE:
        assert reply.json()["name"] == "iris"
    else:
        assert reply.body.startswith(b"<!doctype html>")


def test_curl_and_urllib_get_the_metadata_unchanged(live):
    """Their own defaults: curl sends Accept: */*, urllib no Accept at all."""
    with urllib.request.urlopen(live.url) as answer:
        by_urllib = answer.read()
    by_curl = subprocess.run(["curl", "-sS", live.url], capture_output=True, check=True).stdout
    explicit = live.call("GET", headers={"Accept": "application/json"}).body
    assert by_urllib == by_curl == explicit
    assert json.loads(explicit)["features"] == json.loads((ROOT / "model.json").read_text())[
        "features"]


@pytest.mark.parametrize("path, name, media_type", [
    ("/", "index.html", HTML_TYPE),
    ("/app.js", "app.js", "text/javascript; charset=utf-8"),
    ("/style.css", "style.css", "text/css; charset=utf-8"),
])
def test_the_page_and_its_files_are_web_s_under_a_strict_policy(live, path, name, media_type):
    reply = live.call("GET", headers={"Accept": CHROMIUM_ACCEPT}, path=path)
    assert reply.status == 200
    assert reply.headers["content-type"] == media_type
    assert reply.headers["x-content-type-options"] == "nosniff"
    policy = dict(part.strip().split(" ", 1)
                  for part in reply.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == policy["style-src"] == "'self'"  # no inline script or style
    assert policy["frame-ancestors"] == "'none'"
    committed = (ROOT / "web" / name).read_bytes()
    if name == "index.html":  # the page served here calls the function at its own URL
        committed = committed.replace(b'content="http://localhost:8080"', b'content="."')
        assert b'<meta name="iris-predict-api" content=".">' in reply.body
    assert reply.body == committed
    assert b"<script>" not in reply.body and b" style=" not in reply.body


def test_head_of_the_page_has_no_body(live):
    reply = live.call("HEAD", headers={"Accept": "text/html"})
    assert (reply.status, reply.body) == (200, b"")
    assert reply.headers["content-type"] == HTML_TYPE
