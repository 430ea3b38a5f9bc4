"""Cross-origin headers, so web pages on the allowed origins can call the function.

CORS only tells browsers which pages may read answers; it is not access
control (curl ignores it). README "Security" says what protects the function.
"""

from iris_predict import settings

PREFLIGHT_MAX_AGE = "3600"  # seconds browsers may cache a preflight answer
ANY_ORIGIN = {"Access-Control-Allow-Origin": "*"}


def headers(origin, preflight_allow: str = "") -> dict:
    """The CORS headers for an answer to a request from `origin` (None if not a browser).

    `preflight_allow`, for a preflight: the methods its path answers.
    """
    if "*" in settings.ALLOWED_ORIGINS:
        found = dict(ANY_ORIGIN)
    else:
        # The answer differs by origin, so caches must key on it.
        found = {"Vary": "Origin"}
        if origin and origin.rstrip("/") in settings.ALLOWED_ORIGINS:
            found["Access-Control-Allow-Origin"] = origin
    if preflight_allow and "Access-Control-Allow-Origin" in found:
        found["Access-Control-Allow-Methods"] = preflight_allow
        found["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        found["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return found
