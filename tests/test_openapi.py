"""The OpenAPI contract generated from model.json (iris_predict/contract.py), without a server.

The committed openapi.yaml must be what the generator writes for the committed
model.json; every generated document must pass a real OpenAPI 3.1 validator; and
its schemas must accept and refuse what the function does, for iris and for models
with categories, missing values and a regression target (signatures written here
by hand). tests/test_contract.py checks the live function against the same document.
"""

import json
import re
from decimal import Decimal

import jsonschema_rs
import pytest
from hypothesis import given, settings, strategies as st
from openapi_spec_validator import validate as validate_openapi

import openapi
from harness import ROOT
from iris_predict import contract
from iris_predict.model import signature
from iris_predict.protocols import routes

LIMITS = (2 * 1024 * 1024, 10_000)  # the defaults of MAX_BODY_BYTES and MAX_BATCH_ROWS
# A shop's churn model: a number with no bounds, one with bounds and missing values allowed,
# and a category with missing values allowed.
CHURN = {
    "name": "churn", "task": "classification", "target": "churned", "classes": ["no", "yes"],
    "features": [
        {"name": "tenure months", "type": "number", "missing": False,
         "min": 1, "max": 72, "mean": 32.4, "std": 24.6},
        {"name": "monthly_fee", "type": "number", "unit": "EUR", "missing": True,
         "bounds": {"minimum": 0, "exclusiveMaximum": 1000},
         "min": 18.25, "max": 118.75, "mean": 64.8, "std": 30.1},
        {"name": "plan", "type": "category", "missing": True,
         "categories": {"basic": 0.5, "plus": 0.3, "pro": 0.2}},
    ],
}
# A regression model with aliases, all numbers (so one [N, F] tensor in V2).
HOUSES = {
    "name": "houses", "task": "regression", "target": "price",
    "features": [
        {"name": "rooms", "alias": "r", "type": "number", "bounds": {"minimum": 1},
         "min": 1, "max": 9, "mean": 3.2, "std": 1.1},
        {"name": "area", "alias": "a", "type": "number", "unit": "m2",
         "bounds": {"exclusiveMinimum": 0, "maximum": 2000},
         "min": 20, "max": 400, "mean": 92.5, "std": 40.2},
    ],
}


def document(meta: dict) -> dict:
    return routes.contract(signature.from_metadata(meta), *LIMITS)


def validator(doc: dict, name: str):
    """A JSON Schema validator for one of the document's schemas, $refs resolved within it."""
    return jsonschema_rs.Draft202012Validator(
        {**doc["components"]["schemas"][name], "components": doc["components"]})


def test_the_committed_contract_is_generated_from_the_committed_model():
    committed = (ROOT / "openapi.yaml").read_text()
    assert committed == openapi.render(ROOT / "model.json"), \
        "openapi.yaml is stale: run `make openapi` and commit it"


@pytest.mark.parametrize("meta", [json.loads((ROOT / "model.json").read_text()), CHURN, HOUSES],
                         ids=["iris", "churn", "houses"])
def test_every_generated_contract_is_valid_openapi(meta):
    doc = document(meta)
    validate_openapi(doc)  # raises with the offending part of the document
    # Every $ref resolves and every component is used: nothing dangling, nothing dead.
    text = json.dumps(doc)
    refs = set(re.findall(r'"#/components/(\w+)/([^"]+)"', text))
    defined = {(kind, name) for kind, found in doc["components"].items() for name in found}
    assert refs == defined


def test_a_model_with_categories_and_missing_values():
    doc = document(CHURN)
    one = validator(doc, "RowByName")
    one.validate({"tenure months": 12, "monthly_fee": 49.5, "plan": "basic"})
    one.validate({"tenure months": 12, "monthly_fee": None, "plan": "enterprise"})  # a warning
    one.validate({"tenure months": -3})  # no bounds; the two others may be missing
    for bad in ({"monthly_fee": 10},                       # tenure months may not be missing
                {"tenure months": None},
                {"tenure months": 1, "plan": 3},            # a number for a category
                {"tenure months": 1, "monthly_fee": "ten"},  # a string for a number
                {"tenure months": 1, "monthly_fee": 1000},   # exclusiveMaximum
                {"tenure months": 1, "colour": "red"}):
        assert not one.is_valid(bad), bad
    assert "RowByAlias" not in doc["components"]["schemas"]  # no feature has one
    row = validator(doc, "Row")
    row.validate([1.5, None, "pro"])
    assert not row.is_valid([1.5, None])
    assert not row.is_valid(["pro", None, 1.5])
    # V2: one tensor per column, BYTES for the category.
    infer = validator(doc, "V2InferenceRequest")
    infer.validate({"inputs": [
        {"name": "tenure months", "shape": [2], "datatype": "FP64", "data": [3, 40]},
        {"name": "monthly_fee", "shape": [2, 1], "datatype": "FP32", "data": [20.5, None]},
        {"name": "plan", "shape": [2], "datatype": "BYTES", "data": ["basic", "pro"]}]})
    assert not infer.is_valid({"inputs": [
        {"name": "plan", "shape": [1], "datatype": "FP64", "data": [1.0]}] * 3})
    # Answers: the label under the target's name, probabilities per class.
    answer = validator(doc, "RowAnswer")
    answer.validate({"prediction": [1], "churned": "yes",
                     "probabilities": {"no": 0.25, "yes": 0.75},
                     "warnings": [{"row": 0, "feature": "plan", "value": "enterprise",
                                   "message": 'plan "enterprise" was not seen in training'}]})
    assert not answer.is_valid({"prediction": [2], "churned": "maybe",
                                "probabilities": {"no": 0.25, "yes": 0.75}, "warnings": []})
    csv = re.compile(doc["components"]["schemas"]["CsvTable"]["pattern"])
    assert csv.match("tenure months,monthly_fee,plan\n12,,basic\n3,999.5,\n")
    assert not csv.match("tenure months,monthly_fee,plan\n12,1000,basic\n")


def test_a_regression_model():
    doc = document(HOUSES)
    schemas = doc["components"]["schemas"]
    assert {"ClassIndex", "Probabilities", "Label"}.isdisjoint(schemas)
    validator(doc, "RowAnswer").validate({"prediction": [251000.5], "price": 251000.5,
                                          "warnings": []})
    assert not validator(doc, "RowAnswer").is_valid(
        {"prediction": [1.0], "price": 1.0, "probabilities": {}, "warnings": []})
    validator(doc, "RowByAlias").validate({"r": 3, "a": 75})
    assert not validator(doc, "RowByAlias").is_valid({"r": 0.5, "a": 75})  # minimum 1
    assert not validator(doc, "BigQueryRequest").is_valid(
        {"calls": [], "userDefinedContext": {"output": "class"}})  # no classes to name
    tensor = schemas["V2InferenceRequest"]["properties"]["inputs"]
    assert tensor["maxItems"] == 1  # all numbers: one [N, 2] tensor, as for iris
    assert doc["paths"]["/v2/models/{model_name}/infer"]["parameters"][0]["$ref"] \
        == "#/components/parameters/ModelName"
    assert doc["components"]["parameters"]["ModelName"]["schema"]["enum"] == ["houses"]


BOUNDS = st.fixed_dictionaries({}, optional={
    "minimum": st.integers(0, 120), "exclusiveMinimum": st.integers(0, 120),
    "maximum": st.integers(0, 1200), "exclusiveMaximum": st.integers(0, 1200)})
DECIMALS = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,4}(\.[0-9]{0,3})?\Z"),
    st.from_regex(r"\A0?\.[0-9]{1,3}\Z"),
    st.text("0123456789.-", max_size=6))
# Near a bound, where a pattern is most easily wrong: the bound itself, with a fraction.
NEAR = st.tuples(st.integers(-1, 1), st.sampled_from(["", ".", ".0", ".00", ".5", ".05", ".999"]),
                 st.sampled_from(["", "0", "00"]))


@settings(max_examples=600, deadline=None)
@given(bounds=BOUNDS, data=st.data())
def test_decimal_patterns_match_exactly_the_strings_within_bounds(bounds, data):
    """The pattern for a NUMERIC argument or CSV cell vs the bounds, compared as decimals here."""
    if bounds and data.draw(st.booleans()):
        step, fraction, zeros = data.draw(NEAR)
        text = f"{zeros}{data.draw(st.sampled_from(sorted(bounds.values()))) + step}{fraction}"
    else:
        text = data.draw(DECIMALS)
    feature = signature.from_metadata({
        "name": "m", "task": "regression", "target": "y",
        "features": [{"name": "x", "bounds": bounds, "min": 0, "max": 1, "mean": 0, "std": 1}],
    }).features[0]
    pattern = contract.decimal_pattern(feature)
    if pattern is None:  # bounds no simple pattern says: the contract leaves strings out
        return
    try:
        value = Decimal(text)
        well_formed = re.fullmatch(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)", text) is not None
    except ArithmeticError:
        well_formed = False
    within = well_formed and all((
        value >= bounds.get("minimum", value), value > bounds.get("exclusiveMinimum", value - 1),
        value <= bounds.get("maximum", value), value < bounds.get("exclusiveMaximum", value + 1)))
    assert (re.fullmatch(pattern, text) is not None) == within, (pattern, text)
