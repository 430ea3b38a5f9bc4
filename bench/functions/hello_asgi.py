"""Reference (b): a hello world on functions-framework's ASGI path, on the function's stack.

The function serves with gunicorn, the uvicorn worker, httptools and uvloop
(iris_predict/edge/server.py names them); so does this. HELLO_STACK measures what
each part is worth: another HTTP parser and event loop ("h11,asyncio",
"httptools,asyncio"), or "protocol": the function's own tuned protocol
(iris_predict.server.tune: header deadline, the framework's refusals routed).
"""

import os

import functions_framework.aio
from starlette.responses import JSONResponse
from uvicorn_worker import UvicornWorker

STACK = os.environ.get("HELLO_STACK", "httptools,uvloop")


@functions_framework.aio.http
async def hello(request):
    return JSONResponse({"message": "hello world"})


if STACK == "protocol":
    from iris_predict.edge import server
    server.tune(hello)
else:
    http, loop = STACK.split(",")
    UvicornWorker.CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "http": http, "loop": loop}
