"""Reference (c): the original tutorial's style, written by us.

A Flask app that trains a DecisionTreeClassifier at import and answers
{"prediction": [k]}; the benchmark serves it with gunicorn as functions-framework
would (one gthread worker).
"""

import flask
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

iris = load_iris()
model = DecisionTreeClassifier().fit(iris.data, iris.target)
app = flask.Flask(__name__)


@app.route("/", methods=["POST"])
def predict():
    data = flask.request.get_json()
    row = [[data["sl"], data["sw"], data["pl"], data["pw"]]]
    return flask.jsonify({"prediction": model.predict(row).tolist()})
