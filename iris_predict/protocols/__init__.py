"""The wire protocols: one module each, with the same small interface.

A protocol module names itself (NAME), its PATHS, where it is (WHERE) and the MEDIA_TYPES
it takes; a POST goes through its claims, decode, parse, answer and respond; error_body
words its refusals and openapi writes its part of the contract. Optional: match(path),
for paths with parameters, and decode_rows(body, signature), for rows of numbers read
straight into the model's matrix (routes.py says how each is used).
"""
