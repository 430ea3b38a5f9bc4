"""Reference (a): a hello world on functions-framework's default (Flask) path."""

import functions_framework


@functions_framework.http
def hello(request):
    return {"message": "hello world"}
