"""What the server module takes from uvicorn beyond its documented options, checked by name.

The server's Protocol subclasses uvicorn's HttpToolsProtocol, extends its parser callbacks and
reads attributes that uvicorn documents nowhere (`cycle`, `response_started`, ...). A uvicorn
release may rename any of them; serving would then break in ways the other tests show only as
failed requests. This test names what went missing, so that an upgrade (Dependabot's, or the
weekly run against the newest releases: .github/workflows/upgrades.yml) says what to adapt.
"""

import asyncio
import socket

import uvicorn
from uvicorn_worker import UvicornWorker

import main  # noqa: F401  (importing it tunes the worker: server.tune)

# Methods of HttpToolsProtocol that Protocol extends, or that uvicorn calls and it overrides.
CALLBACKS = ("connection_made", "connection_lost", "data_received", "on_message_begin",
             "on_headers_complete", "on_message_complete", "send_400_response")
# Set by uvicorn on the protocol, and on each request's cycle, read or replaced by the server.
PROTOCOL_ATTRIBUTES = ("app", "loop", "transport", "cycle")
CYCLE_ATTRIBUTES = ("scope", "transport", "response_started", "response_complete")


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _missing() -> list:
    """What the server module relies on and this uvicorn lacks, each named."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        from uvicorn.server import ServerState
    except ImportError as e:
        return [f"uvicorn.protocols.http.httptools_impl.HttpToolsProtocol ({e})"]
    missing = [f"HttpToolsProtocol.{name}()" for name in CALLBACKS
               if not callable(getattr(HttpToolsProtocol, name, None))]
    protocol_class = UvicornWorker.CONFIG_KWARGS.get("http")
    if not (isinstance(protocol_class, type) and issubclass(protocol_class, HttpToolsProtocol)):
        missing.append(f"UvicornWorker.CONFIG_KWARGS['http'] (got {protocol_class!r})")
    try:
        config = uvicorn.Config(_ok, **UvicornWorker.CONFIG_KWARGS)
        config.load()
    except TypeError as e:
        return missing + [f"uvicorn.Config options the server sets ({e})"]
    # A real request through uvicorn's own protocol, over a socket pair.
    loop = asyncio.new_event_loop()
    ours, theirs = socket.socketpair()
    try:
        protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={},
                                     _loop=loop)
        loop.run_until_complete(loop.connect_accepted_socket(lambda: protocol, ours))
        protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        missing += [f"HttpToolsProtocol().{name}" for name in PROTOCOL_ATTRIBUTES
                    if not hasattr(protocol, name)]
        cycle = getattr(protocol, "cycle", None)
        if cycle is not None:
            missing += [f"RequestResponseCycle().{name}" for name in CYCLE_ATTRIBUTES
                        if not hasattr(cycle, name)]
        protocol.transport.close()
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        theirs.close()
        loop.close()
    return missing


def test_uvicorn_still_has_what_the_server_relies_on():
    missing = _missing()
    assert not missing, (
        f"uvicorn {uvicorn.__version__} no longer has what the server module "
        f"({UvicornWorker.CONFIG_KWARGS.get('http').__module__}) relies on: "
        f"{', '.join(missing)}. Adapt Protocol and HeadWithBody there before taking this "
        "uvicorn, or keep the pin in requirements.in.")
