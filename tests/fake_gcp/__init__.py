"""A small fake of the Google Cloud APIs that `gcloud functions deploy` calls, on loopback.

gcloud is pointed at it with CLOUDSDK_API_ENDPOINT_OVERRIDES_* and also uses it as its HTTP
proxy (CLOUDSDK_PROXY_*), so every request gcloud makes arrives here: one for any other host
(an HTTPS CONNECT to a real Google host, the metadata server) is refused and recorded, and a
test can prove that nothing left the machine.

It keeps just enough state for a deploy: functions, operations (done at once, with stages),
uploaded zips, Cloud Run IAM policies, and the Cloud Run service behind each function with its
revisions and traffic, which `gcloud run` reads and writes through Cloud Run's regional
Knative-style API (`REGION-run.googleapis.com/apis/serving.knative.dev/v1/...`, here
`REGION-127.0.0.1:PORT`). Every deploy creates a revision that leads to the `backend` set at
that moment. It also plays Cloud Run's front end: /fn/NAME (the function's URL) and
/fn/TAG---NAME (a tag's URL) let in callers as Cloud Run would (anyone once allUsers may invoke,
else only a bearer of the identity token) and forward them to the revision's real local
functions-framework server. For drift exports (docs/drift.md) it also keeps Cloud Logging's
sinks and the log entries a test puts in, which `gcloud logging read` lists through a filter.

For `deploy.sh --gateway` (docs/gateway.md) it keeps IAM service accounts, API Gateway's APIs,
configs and gateways, the services enabled and API keys, and plays each gateway's proxy at its
host name (NAME-HASH.uc.gateway.dev): a CONNECT to it through the fake is answered over TLS
with the certificate in `tls`, and each request is checked against the gateway's current
config (its operation, its API key) and passed to the function with the identity token of the
config's service account, which the front end accepts only if that account may invoke it.

One module per API, each a mixin of FakeGoogleCloud (cloud.py, which holds the state and
serves it) with its own routes: functions.py, run.py (with Cloud Run's front end),
cloud_logging.py, gateway.py (with the gateway's proxy), keys.py; common.py holds what they share.
"""

from tests.fake_gcp.cloud import FakeGoogleCloud
from tests.fake_gcp.cloud_logging import matches
from tests.fake_gcp.common import LOGGING_WRITER
from tests.fake_gcp.gateway import UNREGISTERED

__all__ = ["FakeGoogleCloud", "LOGGING_WRITER", "UNREGISTERED", "matches"]
