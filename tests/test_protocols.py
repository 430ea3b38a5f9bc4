"""A protocol is one module: registered at test time, it is routed, answered and in the contract.

The module below is written to a file and served by a real functions-framework server whose
source imports main.py and registers it (routes.register); no file of the function changes.
Expected answers come from scikit-learn's own predict on the bundled model.
"""

import json
import textwrap

import joblib
import numpy as np
import pytest

from harness import ROOT, FunctionServer, call
from iris_predict import settings

LABELS = textwrap.dedent('''
    """Labels: POST /labels with {"rows": [[...], ...]} answers {"labels": [...]}."""

    from iris_predict.edge import decoding
    from iris_predict.edge.responses import json_response
    from iris_predict.errors import InvalidRequest
    from iris_predict.protocols import answers, rows
    from iris_predict.protocols.batch import Batch, Kind

    NAME = "labels"
    PATHS = {"/labels": ("labels", ("POST",))}
    WHERE = "/labels (labels alone)"
    MEDIA_TYPES = (decoding.JSON,)


    def claims(payload):
        return True


    def decode(body, headers, signature):
        return decoding.decode(body)


    def parse(payload, request, served):
        if type(payload) is not dict or set(payload) != {"rows"}:
            raise InvalidRequest('send {"rows": [[...], ...]}')
        return Batch(Kind.INSTANCES, rows.matrix(payload["rows"], "rows", served.signature).X)


    def answer(batch, served):
        return {"labels": answers.Scores(batch, served).labels}


    def respond(body, batch, served):
        return json_response(body)


    def error_body(message, status):
        return {"problem": message}


    def openapi(c):
        return c.Part(
            about=("labels alone", "on `/labels`"),
            paths={"/labels": {"post": {
                "operationId": "labels", "summary": "The label of each row.",
                "requestBody": {"required": True, "content": {
                    decoding.JSON: {"schema": c.ref("LabelsRequest")}}},
                "responses": {"200": c.json_ok("The labels.", c.ref("LabelsAnswer")),
                              **c.refusals("400", "503")}}}},
            requests={"LabelsRequest": {
                "type": "object", "required": ["rows"], "additionalProperties": False,
                "properties": {"rows": {"type": "array", "items": c.ref("Row")}}}},
            answers={"LabelsAnswer": {
                "type": "object", "required": ["labels"], "additionalProperties": False,
                "properties": {"labels": {"type": "array", "items": c.ref("Label")}}}})
''')
SOURCE = textwrap.dedent(f'''
    import sys

    sys.path[:0] = [{str(ROOT)!r}]
    import labels
    from main import predict  # noqa: F401 (the target)
    from iris_predict.protocols import routes

    routes.register(labels)
''')
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 2.5, 4.9, 1.5], [7.7, 3.0, 6.1, 2.3]]
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    where = tmp_path_factory.mktemp("protocol")
    (where / "labels.py").write_text(LABELS)
    (where / "with_labels.py").write_text(SOURCE)
    with FunctionServer(source=where / "with_labels.py", env={"PYTHONPATH": str(where)}) as server:
        yield server


def test_a_registered_protocol_is_routed_and_answered(labelled):
    predicted = joblib.load(settings.MODEL_PATH).predict(np.array(ROWS))  # class indices
    classes = json.loads(settings.MODEL_PATH.with_suffix(".json").read_text())["classes"]
    reply = call(labelled.url + "/labels", "POST", json.dumps({"rows": ROWS}).encode(), JSON)
    assert reply.status == 200
    assert json.loads(reply.body) == {"labels": [classes[k] for k in predicted]}


def test_a_registered_protocol_refuses_in_its_own_words(labelled):
    reply = call(labelled.url + "/labels", "POST", b'{"instances": []}', JSON)
    assert reply.status == 400
    assert json.loads(reply.body) == {"problem": 'send {"rows": [[...], ...]}'}
    reply = call(labelled.url + "/labels", "POST", b'{"rows": [[1, 2, 3]]}', JSON)
    assert reply.status == 400 and "rows[0]" in json.loads(reply.body)["problem"]


def test_a_registered_protocol_is_in_the_contract_and_the_others_keep_theirs(labelled):
    document = json.loads(call(labelled.url + "/openapi.json", "GET").body)
    operation = document["paths"]["/labels"]["post"]
    assert operation["operationId"] == "labels"
    assert {"LabelsRequest", "LabelsAnswer"} <= set(document["components"]["schemas"])
    assert document["info"]["description"].count("labels alone on `/labels`") == 1
    assert list(document["paths"])[-1] == "/labels"  # after the others, which are all there
    assert {"/", "/v2", "/invocations"} <= set(document["paths"])


def test_the_other_protocols_still_answer_and_unknown_paths_name_the_new_one(labelled):
    reply = call(labelled.url + "/", "POST", json.dumps({"instances": ROWS}).encode(), JSON)
    assert reply.status == 200 and len(json.loads(reply.body)["predictions"]) == 3
    reply = call(labelled.url + "/nothing", "GET")
    assert reply.status == 404 and "/labels (labels alone)" in json.loads(reply.body)["error"]
