"""Reference (c): the smallest functions-framework function, answering constant JSON."""

import functions_framework


@functions_framework.http
def hello(request):
    return {"message": "hello world"}
