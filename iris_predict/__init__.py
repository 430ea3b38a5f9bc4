"""iris-predict: the helpers behind main.py's Cloud Function."""

SERVER_NAME = "iris-predict"  # as the server names itself: the contract, Open Inference metadata
