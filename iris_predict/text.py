"""Client values rendered for messages: short, typed, never the whole thing."""

import json


def kind(value) -> str:
    """The JSON type of a decoded value, as a client would name it."""
    return {bool: "boolean", str: "string", list: "array", dict: "object",
            type(None): "null", int: "number", float: "number"}.get(type(value), "value")


def show(value) -> str:
    """A short rendering of a client value for an error message."""
    if isinstance(value, (dict, list)):
        return kind(value)
    try:
        text = json.dumps(value)
    except (ValueError, TypeError, OverflowError):
        text = kind(value)
    return clip(text, 40)


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
