"""The HTTP edge: the server under the function, request bytes, responses, CORS."""
