"""The API Gateway rehearsal: ./deploy.sh --gateway and its key commands with the real gcloud
CLI against tests/fake_gcp/, and the API config that gateway/api_config.py writes.

The fake records what gcloud 528 calls (IAM service accounts and bindings, API Gateway's
APIs, configs and gateways, Service Usage, API keys) and plays the gateway's proxy at its
HTTPS host name: it finds the request's operation in the gateway's current config, checks the
API key (this project's, its API target, its referrers) where the config asks for one, and
calls the private function with the identity token of the config's service account, which
the fake's Cloud Run front end accepts only if that account may invoke the service and the
token's audience is the function's URL. So a wrong binding, audience, or missing operation
shows as a refusal here. What it cannot show is Google's own enforcement: the quota counting
(Service Control) and its answers over quota, which docs/gateway.md quotes from Google.

One function lives through a whole story (`story`), each step run as from a fresh machine:
a public deploy, --gateway, key commands, a redeploy whose config creation fails, a redeploy
with another quota, and revocation. The tests read what each step did.
"""

import base64
import json
import re
from dataclasses import dataclass

import jsonschema_rs
import pytest
import yaml
from schemathesis.specs.openapi.definitions import OPENAPI_30

from gateway.api_config import api_config
from harness import ROOT, call
from tests.fake_gcp import FakeGoogleCloud, UNREGISTERED
from tests.rehearsal import (PROJECT, REGION, assert_nothing_left_the_machine, deploy,
                             gateway_env, gcloud_env, plan, through_gateway)
from tests.test_canary import DESCRIBE, REDEPLOY

NAME = "iris-predict"
ACCOUNT = f"{NAME}-gateway@{PROJECT}.iam.gserviceaccount.com"
HOST = f"{NAME}-0a1b2c3d4e5f6.uc.gateway.dev"  # the fake's host name for the gateway
SERVICE = f"{NAME}-0a1b2c3d4e5f6.apigateway.{PROJECT}.cloud.goog"  # and its managed service
TUTORIAL = {"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}
SHOP = "https://shop.example/*"
CONTRACT = yaml.safe_load((ROOT / "openapi.yaml").read_text())

# The calls each step makes, recorded from gcloud 528 against the fake ("global" is the fake's
# own host, "gateway" the gateway's; ids, operations and keys left out).
APIS = f"global /v1/projects/{PROJECT}/locations/global/apis"
OPERATION = f"GET global /v1/projects/{PROJECT}/locations/global/operations/OPERATION"
GATEWAYS = f"global /v1/projects/{PROJECT}/locations/{REGION}/gateways"
KEYS = f"global /v2/projects/{PROJECT}/locations/global/keys"
FUNCTION = f"GET global /v2/projects/{PROJECT}/locations/{REGION}/functions/{NAME}"
RUN_POLICY = f"global /v1/projects/{PROJECT}/locations/{REGION}/services/{NAME}"
ACCOUNT_CALLS = [f"GET global /v1/projects/-/serviceAccounts/{ACCOUNT}",
                 f"POST global /v1/projects/{PROJECT}/serviceAccounts"]
BINDING = [FUNCTION, FUNCTION, f"GET {RUN_POLICY}:getIamPolicy", f"POST {RUN_POLICY}:setIamPolicy"]
API_CREATE = [f"GET {APIS}/{NAME}", f"POST {APIS}", OPERATION, f"GET {APIS}/{NAME}"]
CONFIG_CREATE = [f"GET {APIS}/{NAME}", f"POST {APIS}/{NAME}/configs", OPERATION,
                 f"GET {APIS}/{NAME}/configs/CONFIG"]
GATEWAY_CREATE = [f"GET {GATEWAYS}/{NAME}", f"POST {GATEWAYS}", OPERATION,
                  f"GET {GATEWAYS}/{NAME}"]
GATEWAY_UPDATE = [f"GET {GATEWAYS}/{NAME}", f"GET {GATEWAYS}/{NAME}",
                  f"PATCH {GATEWAYS}/{NAME}", OPERATION, f"GET {GATEWAYS}/{NAME}"]
ENABLE = [f"GET {APIS}/{NAME}", f"POST global /v1/projects/{PROJECT}/services/{SERVICE}:enable",
          "GET global /v1/operations/OPERATION"]
KEY_LIST = [f"GET {KEYS}"]
KEY_CREATE = [f"POST {KEYS}", "GET global /v2/operations/OPERATION"]
KEY_STRING = [f"GET global /v2/projects/123456789012/locations/global/keys/KEY/keyString"]
KEY_DELETE = [f"DELETE global /v2/projects/123456789012/locations/global/keys/KEY",
              "GET global /v2/operations/OPERATION"]
# The smoke test: refused without a key, the preflight passed on, GET and POST with the key.
SMOKE_UNKEYED = [f"GET {GATEWAYS}/{NAME}", f"CONNECT gateway {HOST}:443", "GET gateway /",
                 f"CONNECT gateway {HOST}:443", "OPTIONS gateway /", f"OPTIONS global /fn/{NAME}/"]
SMOKE_KEYED = [f"CONNECT gateway {HOST}:443", "GET gateway /", f"GET global /fn/{NAME}/",
               f"CONNECT gateway {HOST}:443", "POST gateway /", f"POST global /fn/{NAME}/"]


def call_names(fake: FakeGoogleCloud, start: int, end: int) -> list[str]:
    """The requests fake.requests[start:end] as "METHOD WHERE PATH", ids left out."""
    names = []
    for request in fake.requests[start:end]:
        where = ("gateway" if HOST in request.host
                 else REGION if request.host.startswith(f"{REGION}-") else "global")
        path = request.path or request.host  # a CONNECT names its host
        for pattern, placeholder in [(r"/operations/[^/]+$", "/operations/OPERATION"),
                                     (r"^/upload/.+$", "/upload/OBJECT"),
                                     (rf"/configs/{NAME}-\d{{8}}-\d{{6}}$", "/configs/CONFIG"),
                                     (r"/keys/[0-9a-f-]{36}", "/keys/KEY")]:
            path = re.sub(pattern, placeholder, path)
        names.append(f"{request.method} {where} {path}")
    return names


@dataclass
class Step:
    result: object  # the finished ./deploy.sh
    start: int  # its requests are fake.requests[start:end]
    end: int
    keys: dict  # label -> key string of each key once it finished
    probed: object  # what a client got from the gateway then (see PROBES)


# The story: (step, extra environment, deploy.sh's arguments, a failure the fake answers with).
CONFIG_REFUSED = "Cannot convert to service config: fake_gcp refuses this one"
ENABLE_REFUSED = "Permission denied to enable service [fake_gcp refuses this one]"
STORY = [
    ("public deploy", {}, ["--public"], None),
    ("gateway", {}, ["--gateway"], None),
    ("new key", {}, ["--new-key", "shop", "--referrers", SHOP], None),
    ("same label", {}, ["--new-key", "shop"], None),
    ("list keys", {}, ["--list-keys"], None),
    ("failed config", {}, ["--gateway", "--quota-per-minute", "5"],
     ("POST", r"/configs$", 400, CONFIG_REFUSED)),
    ("redeploy", {"QUOTA_PER_MINUTE": "5"}, ["--gateway"], None),
    ("failed enable", {}, ["--gateway"], ("POST", r":enable$", 403, ENABLE_REFUSED)),
    ("revoke", {}, ["--revoke-key", "shop"], None),
    ("revoke again", {}, ["--revoke-key", "shop"], None),
]


def referrer_probes(fake: FakeGoogleCloud) -> dict:
    """Referer -> the gateway's answer to a POST with the key labelled shop, from that page."""
    shop = key_string(fake, "shop")
    return {referer: post(fake, shop, referer) for referer in (
        None, "https://shop.example/", "https://shop.example/flowers/index.html",
        "https://elsewhere.example/")}


def serving_probe(fake: FakeGoogleCloud) -> dict:
    """The config the gateway serves, and its answer to the smoke test's key."""
    return {"config": serving_config(fake),
            "answer": post(fake, key_string(fake, "deploy-smoke-test"))}


# What the story asks the gateway right after a step, for the tests to read.
PROBES = {"new key": referrer_probes, "failed config": serving_probe, "redeploy": serving_probe,
          "failed enable": serving_probe}
# A BigQuery connection's service account, granted the invoker role as docs/bigquery.md says.
BIGQUERY = "serviceAccount:bqcx-123456789012-abcd@gcp-sa-bigquery-condel.iam.gserviceaccount.com"


def grant_bigquery(fake: FakeGoogleCloud):
    """What `gcloud functions add-invoker-policy-binding` does for BigQuery (docs/bigquery.md)."""
    (policy,) = fake.policies.values()
    policy["bindings"].append({"role": "roles/run.invoker", "members": [BIGQUERY]})


# What is done to Google Cloud before a step, besides the story's commands.
SETUP = {"gateway": grant_bigquery}


@pytest.fixture(scope="module")
def story(live, tmp_path_factory):
    """The whole story on one fake: (the fake, {step: Step})."""
    fake = FakeGoogleCloud(backend=live.url).start()
    steps = {}
    for step, settings, args, failure in STORY:
        env = {**gateway_env(fake, tmp_path_factory.mktemp("machine")),
               "ID_TOKEN": fake.id_token, **settings}
        if failure:
            fake.fail(*failure)
        if step in SETUP:
            SETUP[step](fake)
        start = len(fake.requests)
        result = deploy(env, *args)
        fake.failures.clear()
        end = len(fake.requests)
        steps[step] = Step(result, start, end,
                           {k["displayName"]: k["keyString"] for k in fake.keys.values()},
                           PROBES[step](fake) if step in PROBES else None)
    yield fake, steps
    fake.stop()


def configs(fake: FakeGoogleCloud) -> dict:
    """The configs gcloud created, oldest first: {config id: the OpenAPI document it uploaded}."""
    return {name.rsplit("/", 1)[1]: yaml.safe_load(base64.b64decode(
                config["openapiDocuments"][0]["document"]["contents"]))
            for name, config in fake.api_configs.items()}


def serving_config(fake: FakeGoogleCloud) -> str:
    (gateway,) = fake.gateways.values()
    return gateway["apiConfig"].rsplit("/", 1)[1]


def key_string(fake: FakeGoogleCloud, label: str) -> str:
    (key,) = [k["keyString"] for k in fake.keys.values() if k["displayName"] == label]
    return key


def post(fake, key: str | None = None, referer: str | None = None, path: str = "/"):
    headers = {"Content-Type": "application/json", **({"x-api-key": key} if key else {}),
               **({"Referer": referer} if referer else {})}
    status, _, body = through_gateway(fake, HOST, "POST", path, json.dumps(TUTORIAL).encode(),
                                      headers)
    return status, json.loads(body)


# --- ./deploy.sh --gateway -------------------------------------------------------------------

def test_gateway_makes_its_calls_in_order(story):
    fake, steps = story
    gateway = steps["gateway"]
    assert gateway.result.returncode == 0, gateway.result.stderr
    assert call_names(fake, gateway.start, gateway.end) == [
        *DESCRIBE, *REDEPLOY,  # 1. the function, private
        *ACCOUNT_CALLS,  # 2. the gateway's service account
        *BINDING,  # 3. its binding on the function's service
        *API_CREATE,  # 5. (4. wrote the config here)
        *CONFIG_CREATE,  # 6.
        *GATEWAY_CREATE,  # 7.
        *ENABLE,  # 8.
        *SMOKE_UNKEYED, *KEY_LIST, *KEY_CREATE, *KEY_STRING, *SMOKE_KEYED,  # 9.
    ]
    assert_nothing_left_the_machine(fake)


def test_gateway_keeps_the_function_private(story):
    fake, steps = story
    (function,) = fake.functions.values()
    service = function["serviceConfig"]["service"]
    public = steps["public deploy"]
    (grant,) = [r for r in fake.requests[public.start:public.end]
                if r.path.endswith(":setIamPolicy")]
    assert {"role": "roles/run.invoker", "members": ["allUsers"]} in grant.json()["policy"][
        "bindings"]  # public until the gateway came
    # Who may invoke it now: BigQuery's connection, as before (docs/gateway.md says why it
    # keeps calling directly), and the gateway's account, on this service alone.
    assert fake.policies == {service: {"etag": "BwYAAAA=", "bindings": [
        {"role": "roles/run.invoker", "members": [BIGQUERY, f"serviceAccount:{ACCOUNT}"]}]}}
    assert not fake.public(service)
    assert call(function["url"], "POST", TUTORIAL).status == 403


def test_gateway_config_is_made_with_its_service_account(story):
    fake, _ = story
    assert [c["gatewayServiceAccount"] for c in fake.api_configs.values()] == [ACCOUNT] * 3
    assert ACCOUNT in fake.service_accounts


def test_gateway_smoke_test_was_refused_without_a_key_and_answered_with_one(story, live):
    fake, steps = story
    gateway = steps["gateway"]
    assert f"Gateway: https://{HOST} (config " in gateway.result.stdout
    requests = fake.requests[gateway.start:gateway.end]
    unkeyed, preflight, keyed_get, keyed_post = [r for r in requests if r.host == HOST]
    # It posted the model's probe rows (probes.py), and got the function's own answer to them.
    assert "instances" in keyed_post.json()
    expected = live.call("POST", keyed_post.json()).json()
    (passed,) = [line for line in gateway.result.stdout.splitlines()
                 if line.startswith("Smoke test passed: ")]
    assert json.loads(passed.removeprefix("Smoke test passed: ")) == expected
    smoke_key = key_string(fake, "deploy-smoke-test")
    assert "x-api-key" not in unkeyed.headers and "x-api-key" not in preflight.headers
    assert keyed_get.headers["x-api-key"] == keyed_post.headers["x-api-key"] == smoke_key
    assert smoke_key not in gateway.result.stdout + gateway.result.stderr  # never shown


def test_through_the_gateway_a_key_is_needed_and_enough(story, live):
    fake, _ = story
    expected = live.call("POST", TUTORIAL).json()
    assert post(fake) == (401, {"code": 401, "message": f"UNAUTHENTICATED:{UNREGISTERED}"})
    assert post(fake, "AIzaNotAKeyOfThisProject") == (
        400, {"code": 400, "message": "INVALID_ARGUMENT:API key not valid. Please pass a valid "
                                      "API key."})
    assert post(fake, key_string(fake, "deploy-smoke-test")) == (200, expected)
    # Every path of the contract goes through: the Open Inference Protocol's too.
    status, _, body = through_gateway(fake, HOST, "GET", "/v2/models/iris/ready",
                                      headers={"x-api-key": key_string(fake, "deploy-smoke-test")})
    assert (status, json.loads(body)) == (200, live.call("GET", path="/v2/models/iris/ready")
                                          .json())
    status, _, body = through_gateway(fake, HOST, "GET", "/admin",
                                      headers={"x-api-key": key_string(fake, "deploy-smoke-test")})
    assert status == 404  # not in the contract, so not in the config


def test_a_cors_preflight_reaches_the_function_without_a_key(story, live):
    fake, _ = story
    headers = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type,x-api-key"}
    status, got, body = through_gateway(fake, HOST, "OPTIONS", "/", headers=headers)
    direct = live.call("OPTIONS", headers=headers)
    assert (status, body) == (204, b"")
    for name in ("allow", "access-control-allow-methods", "access-control-allow-headers",
                 "access-control-allow-origin"):
        assert got[name] == direct.headers[name]
    assert "X-Api-Key" in got["access-control-allow-headers"].split(", ")


def test_dry_run_prints_every_command_and_writes_the_config_it_names(cloud, tmp_path):
    env = {**gcloud_env(cloud, tmp_path, token=False), "TMPDIR": str(tmp_path)}
    result = deploy(env, "--dry-run", "--gateway", "--quota-per-minute", "42")
    assert result.returncode == 0, result.stderr
    commands = [c[1:4] for c in plan(result.stdout)]
    assert commands == [
        ["run", "services", "describe"], ["functions", "deploy", NAME],
        ["iam", "service-accounts", "describe"], ["iam", "service-accounts", "create"],
        ["functions", "add-invoker-policy-binding", NAME],
        ["api-gateway", "apis", "describe"], ["api-gateway", "apis", "create"],
        ["api-gateway", "api-configs", "create"],
        ["api-gateway", "gateways", "describe"], ["api-gateway", "gateways", "create"],
        ["api-gateway", "apis", "describe"], ["services", "enable", "MANAGED_SERVICE"],
        ["api-gateway", "gateways", "describe"]]
    (create,) = [c for c in plan(result.stdout) if c[1:4] == ["api-gateway", "api-configs",
                                                              "create"]]
    (spec,) = [a.removeprefix("--openapi-spec=") for a in create
               if a.startswith("--openapi-spec=")]
    assert f"--backend-auth-service-account={ACCOUNT}" in create
    assert "--no-allow-unauthenticated" in plan(result.stdout)[1]
    config = yaml.safe_load(open(spec).read())
    assert config == api_config(CONTRACT, "FUNCTION_URL", 42)
    assert "# (when it exists: gcloud api-gateway gateways update" in result.stdout
    assert cloud.requests == []


@pytest.mark.parametrize("args, message", [
    (["--gateway", "--public"], "--gateway keeps the function private"),
    (["--gateway", "--quota-per-minute", "0"], "--quota-per-minute must be a positive integer"),
    (["--gateway", "--name", "a-function-name-far-too-long"],
     "a-function-name-far-too-long-gateway, which is not a valid account id"),
    (["--gateway", "--gateway-wait", "soon"], "--gateway-wait must be 0 or more seconds"),
    (["--new-key"], "--new-key needs a value"),
    (["--new-key", "shop;rm"], "--new-key needs a label of letters"),
    (["--new-key", "shop", "--referrers", "shop.example/*"],
     "'shop.example/*' is not a web address pattern"),
    (["--gateway", "--referrers", SHOP], "--referrers goes with --new-key"),
    (["--gateway", "--canary", "10"], "--gateway and --canary cannot go together"),
    (["--list-keys", "--revoke-key", "shop"], "--list-keys and --revoke-key cannot go together"),
])
def test_bad_gateway_arguments_are_refused_before_anything_runs(cloud, env, args, message):
    result = deploy(env, *args)
    assert result.returncode == 1
    assert message in result.stderr
    assert cloud.requests == []


# --- A failed step, and a redeploy --------------------------------------------------------------

def test_a_failed_config_leaves_the_old_config_serving(story, live):
    fake, steps = story
    failed = steps["failed config"]
    assert failed.result.returncode == 1
    assert CONFIG_REFUSED in failed.result.stderr
    assert (f"'6. Creating the API config {NAME}-" in failed.result.stderr
            and "failed (gcloud's message is above); the later steps did not run and the "
                "gateway still serves the config it had" in failed.result.stderr)
    names = call_names(fake, failed.start, failed.end)
    assert names[-2:] == [f"GET {APIS}/{NAME}", f"POST {APIS}/{NAME}/configs"]  # then it stopped
    assert [entry for entry in fake.gateway_log if failed.start <= entry[0] < failed.end] == []
    # The gateway kept the first config, and answered with it.
    first, second, _ = configs(fake)
    expected = live.call("POST", TUTORIAL).json()
    assert failed.probed == {"config": first, "answer": (200, expected)}
    assert steps["redeploy"].probed == {"config": second, "answer": (200, expected)}


def test_a_redeploy_points_the_gateway_at_a_new_config(story):
    fake, steps = story
    redeploy = steps["redeploy"]
    assert redeploy.result.returncode == 0, redeploy.result.stderr
    assert call_names(fake, redeploy.start, redeploy.end) == [
        *DESCRIBE, *REDEPLOY,
        ACCOUNT_CALLS[0],  # the account exists: not created again
        *BINDING,
        f"GET {APIS}/{NAME}",  # the API exists
        *CONFIG_CREATE,
        *GATEWAY_UPDATE,  # the gateway exists: pointed at the new config
        *ENABLE,
        *SMOKE_UNKEYED, *KEY_LIST, *KEY_STRING, *SMOKE_KEYED,  # the smoke key exists
    ]
    first, second, _ = configs(fake)
    assert first != second  # configs are immutable: a new one each deploy
    assert [entry[2].rsplit("/", 1)[1] for entry in fake.gateway_log][:2] == [first, second]
    (patch,) = [r for r in fake.requests[redeploy.start:redeploy.end] if r.method == "PATCH"
                and "/gateways/" in r.path]
    assert patch.query["updateMask"] == ["apiConfig"]


def test_a_step_failing_after_the_switch_says_how_to_switch_back(story, live):
    fake, steps = story
    failed = steps["failed enable"]
    assert failed.result.returncode == 1
    assert ENABLE_REFUSED in failed.result.stderr
    _, second, third = configs(fake)
    # The new config serves (the gateway was pointed at it), and the message names the one
    # before, with the command that goes back to it.
    assert failed.probed == {"config": third, "answer": (200, live.call("POST", TUTORIAL).json())}
    assert ("'8. Enabling the API's managed service, which its keys are restricted to' failed "
            "(gcloud's message is above); the later steps did not run and the gateway already "
            f"serves the new config; gcloud api-gateway gateways update {NAME} --api={NAME} "
            f"--api-config={second} --location={REGION} --project={PROJECT} takes it back"
            in failed.result.stderr)
    assert "Smoke test passed" not in failed.result.stdout


# --- Keys ------------------------------------------------------------------------------------

def test_new_key_is_restricted_to_the_gateway_and_the_pages_given(story):
    fake, steps = story
    new = steps["new key"]
    assert new.result.returncode == 0, new.result.stderr
    assert call_names(fake, new.start, new.end) == [f"GET {APIS}/{NAME}", *KEY_LIST,
                                                    *KEY_CREATE, *KEY_STRING]
    (create,) = [r for r in fake.requests[new.start:new.end] if r.method == "POST"]
    assert create.json() == {"displayName": "shop", "restrictions": {
        "apiTargets": [{"service": SERVICE}],
        "browserKeyRestrictions": {"allowedReferrers": [SHOP]}}}


def test_new_key_prints_the_key_string_once(story):
    _, steps = story
    new = steps["new key"]
    shop = new.keys["shop"]
    assert new.result.stdout == shop + "\n"  # alone on stdout, for a script to take
    assert (new.result.stdout + new.result.stderr).count(shop) == 1
    assert "shown only this once: store it now" in new.result.stderr


def test_a_browser_key_works_only_from_its_pages(story, live):
    _, steps = story
    expected = live.call("POST", TUTORIAL).json()
    answers = steps["new key"].probed
    # What a page at the shop sends (Chromium sends its origin, strict-origin-when-cross-origin).
    assert answers["https://shop.example/"] == (200, expected)
    assert answers["https://shop.example/flowers/index.html"] == (200, expected)
    assert answers["https://elsewhere.example/"] == (403, {
        "code": 403, "message": "PERMISSION_DENIED:Requests from referer "
                                "https://elsewhere.example/ are blocked."})
    # curl sends no Referer unless told: a browser key is for pages (anyone can send one).
    assert answers[None] == (403, {"code": 403, "message": "PERMISSION_DENIED:Requests from "
                                                           "referer <empty> are blocked."})


def test_a_second_key_with_the_same_label_is_refused(story):
    fake, steps = story
    same = steps["same label"]
    assert same.result.returncode == 1
    assert "a key labelled shop exists already" in same.result.stderr
    assert call_names(fake, same.start, same.end) == [f"GET {APIS}/{NAME}", *KEY_LIST]


def test_list_keys_shows_each_label_and_its_pages(story):
    fake, steps = story
    listed = steps["list keys"]
    assert listed.result.returncode == 0, listed.result.stderr
    assert call_names(fake, listed.start, listed.end) == [f"GET {APIS}/{NAME}", *KEY_LIST]
    header, *rows = listed.result.stdout.splitlines()
    assert header.split() == ["LABEL", "UID", "CREATED", "REFERRERS"]
    assert sorted(row.split()[0] for row in rows) == ["deploy-smoke-test", "shop"]
    (shop,) = [row.split() for row in rows if row.startswith("shop ")]
    assert shop[3] == SHOP
    assert not any(k["keyString"] in listed.result.stdout for k in fake.keys.values())


def test_revoke_key_deletes_it_and_its_calls_are_refused(story):
    fake, steps = story
    revoke = steps["revoke"]
    assert revoke.result.returncode == 0, revoke.result.stderr
    assert call_names(fake, revoke.start, revoke.end) == [f"GET {APIS}/{NAME}", *KEY_LIST,
                                                          *KEY_DELETE]
    assert [k["displayName"] for k in fake.keys.values()] == ["deploy-smoke-test"]
    assert revoke.result.stdout.startswith("Revoked shop: projects/123456789012/locations/")
    shop = steps["new key"].keys["shop"]
    assert post(fake, shop, "https://shop.example/")[0] == 400
    again = steps["revoke again"]
    assert again.result.returncode == 1
    assert "no key labelled shop is restricted to" in again.result.stderr


def test_key_commands_need_the_gateway_deployed(cloud, env):
    result = deploy(env, "--list-keys")
    assert result.returncode == 1
    assert f"there is no API {NAME} to hold keys" in result.stderr
    assert "./deploy.sh --gateway first" in result.stderr


# --- The API config -----------------------------------------------------------------------

def operations(config: dict):
    """(path, method, operation) for each operation of a config."""
    return [(path, method, operation) for path, item in config["paths"].items()
            for method, operation in item.items() if method != "parameters"]


def contract_operations() -> set:
    return {(path, method) for path, item in CONTRACT["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "options", "head", "patch")}


@pytest.fixture(scope="module")
def deployed(story) -> list:
    """The configs the story's gateways were given, as gcloud uploaded them, with the quota
    asked for each."""
    fake, _ = story
    first, second, third = configs(fake).values()
    return [(first, 600), (second, 5), (third, 600)]


def test_config_is_valid_openapi(deployed):
    # Validated against the OpenAPI 3.0 schema (https://spec.openapis.org/oas/3.0/schema/
    # 2019-04-02, the copy schemathesis ships), with the two rules the schema cannot say.
    validator = jsonschema_rs.Draft4Validator(OPENAPI_30)
    for config, _ in deployed:
        assert config["openapi"].startswith("3.0.")
        assert [e.message for e in validator.iter_errors(config)] == []
        ids = [operation["operationId"] for _, _, operation in operations(config)]
        assert len(ids) == len(set(ids))
        for path, item in config["paths"].items():
            declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{([^}]+)\}", path)), path


def test_config_has_every_path_and_method_of_the_contract(deployed):
    for config, _ in deployed:
        assert config["paths"].keys() == CONTRACT["paths"].keys()
        present = {(path, method) for path, method, _ in operations(config)}
        # Every path also takes a CORS preflight, which every route of the function answers.
        assert present == contract_operations() | {(p, "options") for p in CONTRACT["paths"]}
        for path, method, operation in operations(config):
            if method in CONTRACT["paths"][path]:
                assert operation["operationId"] == CONTRACT["paths"][path][method]["operationId"]


def test_config_calls_the_function_with_its_url_as_audience(story, deployed):
    fake, _ = story
    (function,) = fake.functions.values()
    for config, _ in deployed:
        backends = config["x-google-api-management"]["backends"]
        assert backends == {"function": {"address": function["url"],
                                         "jwtAudience": function["url"],
                                         "pathTranslation": "APPEND_PATH_TO_ADDRESS",
                                         "protocol": "http/1.1"}}
        assert config["x-google-backend"] == "function"
        assert not any("x-google-backend" in op for _, _, op in operations(config))


def test_config_asks_a_key_on_every_operation_but_preflights(deployed):
    for config, _ in deployed:
        assert "security" not in config  # each operation says, none inherits
        assert config["components"]["securitySchemes"] == {
            "api_key": {"type": "apiKey", "name": "x-api-key", "in": "header"}}
        for path, method, operation in operations(config):
            if method == "options":
                assert operation["security"] == [], path
            else:
                assert operation["security"] == [{"api_key": []}], (path, method)


def test_config_quota_is_the_one_given(deployed):
    for config, quota in deployed:
        management = config["x-google-api-management"]
        assert management["metrics"] == {"requests": {"displayName": "Requests"}}
        assert management["quota"] == {"limits": {"requests-per-minute": {
            "metric": "requests", "values": quota}}}
        for path, method, operation in operations(config):
            cost = operation.get("x-google-quota", {}).get("metricCosts")
            # Preflights carry no key, so no consumer to count against.
            assert cost == (None if method == "options" else {"requests": 1}), (path, method)


def test_config_follows_whatever_paths_the_contract_has():
    contract = json.loads(json.dumps(CONTRACT))
    contract["paths"]["/v3/things/{thing}"] = {"delete": {"operationId": "dropThing"}}
    del contract["paths"]["/ping"]
    config = api_config(contract, "https://fn.example", 7)
    assert "/ping" not in config["paths"]
    item = config["paths"]["/v3/things/{thing}"]
    assert item["delete"]["security"] == [{"api_key": []}]
    assert item["options"] == {"operationId": "dropThingPreflight", "security": [],
                               "responses": {"204": {"description": "CORS preflight."}}}
    assert item["parameters"] == [{"name": "thing", "in": "path", "required": True,
                                   "schema": {"type": "string"}}]


@pytest.mark.parametrize("quota", [0, -5])
def test_config_refuses_a_quota_below_one(quota):
    with pytest.raises(ValueError, match="1 or more requests a minute"):
        api_config(CONTRACT, "https://fn.example", quota)
