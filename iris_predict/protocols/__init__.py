"""The wire protocols: one module each, with the same small interface."""
