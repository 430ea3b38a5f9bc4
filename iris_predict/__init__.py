"""iris-predict: the helpers behind main.py's Cloud Function."""
