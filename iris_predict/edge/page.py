"""The web page (web/), served by the function itself to browsers.

GET / answers a browser (its Accept prefers text/html) with web/index.html, and
JSON clients (application/json, */*, curl's default, no Accept) with the
metadata as before. The page's script and style sheet are served beside it, so
the page is same-origin with the function: no CORS set-up, and a strict
Content-Security-Policy (no inline script or style). The files are read once, at
import, from the bundle; the page served here calls the function at its own URL
(its meta "iris-predict-api" says "."), while web/ hosted elsewhere still takes
?api=URL or calls http://localhost:8080.
"""

from starlette.responses import Response

from iris_predict import settings
from iris_predict.edge.responses import content_response

WEB_DIR = settings.BUNDLE_DIR / "web"
# Where the page finds the function: web/index.html names the local default, which
# the page served by the function itself replaces with its own URL.
DEFAULT_API = b'<meta name="iris-predict-api" content="http://localhost:8080">'
SAME_ORIGIN_API = b'<meta name="iris-predict-api" content=".">'
# The page's own files only; answers from this origin (or another, ?api=URL);
# never framed, no plugins, no forms posted elsewhere.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; "
          "connect-src 'self' http: https:; base-uri 'none'; form-action 'none'; "
          "frame-ancestors 'none'")
# GET / answers differ by Accept: caches must key on it.
VARY = {"Vary": "Accept"}
HTML_TYPES = ("text/html", "application/xhtml+xml")
JSON_TYPES = ("application/json", "application/*", "*/*")


def _read(name: str) -> bytes:
    return (WEB_DIR / name).read_bytes()


def _index() -> bytes:
    html = _read("index.html")
    if DEFAULT_API not in html:  # a test catches this long before a deploy would
        raise RuntimeError(f"web/index.html lacks {DEFAULT_API.decode()}")
    return html.replace(DEFAULT_API, SAME_ORIGIN_API)


# file: (body, media type)
FILES = {
    "index.html": (_index(), "text/html; charset=utf-8"),
    "app.js": (_read("app.js"), "text/javascript; charset=utf-8"),
    "style.css": (_read("style.css"), "text/css; charset=utf-8"),
}
INDEX = "index.html"
# Where the function serves them: the page at "/" (to browsers), its files beside it.
PATHS = {"/app.js": "app.js", "/style.css": "style.css"}


def wants_html(headers: dict) -> bool:
    """True if the request's Accept prefers HTML to JSON (a browser opening the URL)."""
    accept = headers.get("accept")
    if not accept or "html" not in accept:  # the usual API client, at once
        return False
    html = json = 0.0
    for part in accept.split(","):
        media, _, parameters = part.partition(";")
        media = media.strip().lower()
        quality = _quality(parameters)
        if media in HTML_TYPES:
            html = max(html, quality)
        elif media in JSON_TYPES:
            json = max(json, quality)
    return html > json


def _quality(parameters: str) -> float:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value), 0.0), 1.0)
            except ValueError:
                return 0.0  # RFC 9110: an unreadable weight; treat the type as not wanted
    return 1.0


def response(name: str) -> Response:
    """The page (index.html), its script or its style sheet."""
    body, media_type = FILES[name]
    return content_response(body, media_type, {"Content-Security-Policy": POLICY, **VARY})
