"""Helpers for the deploy rehearsals: ./deploy.sh and the real gcloud CLI against tests/fake_gcp/.

Nothing leaves the machine: gcloud talks only to the fake on loopback (its endpoint overrides,
and its proxy, so a request for any other host is caught) with a throwaway config and a fake
access token.
"""

import http.client
import os
import shlex
import ssl
import subprocess
from pathlib import Path

from tests.fake_gcp import FakeGoogleCloud
from harness import ROOT

PROJECT = "iris-rehearsal"
REGION = "us-central1"


def gcloud_env(fake: FakeGoogleCloud, home: Path, token: bool = True,
               project: str | None = PROJECT) -> dict:
    """The environment for the real gcloud: pointed at the fake, a throwaway config, no Google."""
    config = home / "gcloud"
    (config / "configurations").mkdir(parents=True, exist_ok=True)
    (config / "active_config").write_text("default")
    (config / "configurations" / "config_default").write_text(
        f"[core]\nproject = {project}\n" if project else "[core]\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CLOUDSDK_", "GOOGLE_")) and not k.lower().endswith("_proxy")}
    env.update({
        "CLOUDSDK_CONFIG": str(config),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_CORE_CHECK_GCE_METADATA": "false",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        # Everything gcloud sends goes through the fake, which answers only for itself.
        "CLOUDSDK_PROXY_TYPE": "http",
        "CLOUDSDK_PROXY_ADDRESS": "127.0.0.1",
        "CLOUDSDK_PROXY_PORT": fake.url.rsplit(":", 1)[1],
    })
    for api in ("CLOUDFUNCTIONS", "RUN", "SERVICEUSAGE", "CLOUDBUILD", "CLOUDRESOURCEMANAGER",
                "IAM", "APIGATEWAY", "APIKEYS"):
        env[f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{api}"] = fake.url + "/"
    if token:
        (home / "token").write_text("fake-access-token")
        env["CLOUDSDK_AUTH_ACCESS_TOKEN_FILE"] = str(home / "token")
    return env


def gateway_env(fake: FakeGoogleCloud, home: Path) -> dict:
    """gcloud_env, and what takes curl to the fake's gateways: the fake as the HTTPS proxy (the
    only one curl would use), answering with a certificate curl trusts, made here by openssl.
    A smoke test tries once: GATEWAY_WAIT=0."""
    cert, key = home / "gateway-cert.pem", home / "gateway-key.pem"
    names = ",".join(f"DNS:*.{code}.gateway.dev" for code in ("uc", "ew", "ue"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=gateway.dev", "-addext", f"subjectAltName={names}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    fake.tls = (str(cert), str(key))
    return {**gcloud_env(fake, home), "https_proxy": fake.url, "CURL_CA_BUNDLE": str(cert),
            "GATEWAY_WAIT": "0"}


def through_gateway(fake: FakeGoogleCloud, host: str, method: str, path: str = "/",
                    body: bytes | None = None, headers: dict | None = None):
    """(status, headers with lower-case names, body) of a call to a fake gateway's HTTPS, as a
    client out there makes it (here through the fake as proxy)."""
    context = ssl.create_default_context(cafile=fake.tls[0])
    port = int(fake.url.rsplit(":", 1)[1])
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=60)
    conn.set_tunnel(host, 443)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()


def deploy(env: dict, *args: str, repo: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ./deploy.sh as a user would, from anywhere."""
    return subprocess.run([str(repo / "deploy.sh"), *args], env=env, cwd="/",
                          capture_output=True, text=True, timeout=180)


def gcloud(env: dict, *args: str) -> subprocess.CompletedProcess:
    """Run the real gcloud CLI, as an operator checking on the fake would."""
    return subprocess.run(["gcloud", *args], env=env, capture_output=True, text=True, timeout=120)


def plan(stdout: str) -> list[list[str]]:
    """The commands of a --dry-run plan, each split as the shell would (comments left out)."""
    return [shlex.split(line) for line in stdout.splitlines() if not line.startswith("#")]


def smoke_calls(fake: FakeGoogleCloud) -> list:
    """The requests that reached the deployed function's URL."""
    return [r for r in fake.requests if r.path.startswith("/fn/")]


def assert_nothing_left_the_machine(fake: FakeGoogleCloud):
    assert fake.foreign() == [], "gcloud tried to reach a host other than the fake"
    assert fake.unhandled() == [], "gcloud called an API the fake does not know"
