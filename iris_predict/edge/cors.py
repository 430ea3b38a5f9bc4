"""Cross-origin headers, so web pages on the allowed origins can call the function.

CORS only tells browsers which pages may read answers; it is not access
control (curl ignores it). README "Security" says what protects the function.
"""

from iris_predict import settings

PREFLIGHT_MAX_AGE = "3600"  # seconds browsers may cache a preflight answer
# What pages may send: JSON or CSV bodies, an identity token, an API Gateway key.
ALLOWED_HEADERS = "Content-Type, Authorization, X-Api-Key"
# Every answer's header when any origin may read it, encoded once.
ANY_ORIGIN = [(b"access-control-allow-origin", b"*")]


def headers(origin) -> list:
    """The CORS headers of an answer to a request from `origin` (None if not a browser),
    as raw (name, value) pairs, the form in which they join an answer's headers."""
    if "*" in settings.ALLOWED_ORIGINS:
        return ANY_ORIGIN
    # The answer differs by origin, so caches must key on it.
    found = [(b"vary", b"Origin")]
    if _allowed(origin):
        found.append((b"access-control-allow-origin", origin.encode("latin-1")))
    return found


def preflight(origin, allow: str) -> dict:
    """What a preflight answer adds for an allowed origin: the methods `allow` names."""
    if not ("*" in settings.ALLOWED_ORIGINS or _allowed(origin)):
        return {}
    return {"Access-Control-Allow-Methods": allow,
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": PREFLIGHT_MAX_AGE}


def _allowed(origin) -> bool:
    return bool(origin) and origin.rstrip("/") in settings.ALLOWED_ORIGINS
