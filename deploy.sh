#!/usr/bin/env bash
# Deploy iris-predict to Cloud Run functions (gen2) with gcloud, then smoke-test the live URL.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./deploy.sh [options]

Deploys (or redeploys) this directory as a gen2 HTTP function with entry point `predict`,
then calls it: GET (metadata) and POST the tutorial's flower. Exits non-zero if anything fails.

Options (each also read from the environment variable in brackets; flag wins):
  --name NAME            function name [FUNCTION_NAME] (iris-predict)
  --project ID           Google Cloud project [CLOUDSDK_CORE_PROJECT] (gcloud's configured project)
  --region REGION        region [REGION] (us-central1)
  --runtime RUNTIME      runtime [RUNTIME] (python311, the Python the tests run on)
  --memory SIZE          memory per instance [MEMORY] (512Mi)
  --cpu N                CPUs per instance [CPU] (1)
  --concurrency N        requests per instance at once, also functions-framework's THREADS
                         [CONCURRENCY] (8)
  --min-instances N      instances kept warm [MIN_INSTANCES] (0)
  --max-instances N      instance cap, the cost guard [MAX_INSTANCES] (3)
  --timeout DURATION     request timeout [TIMEOUT] (60s)
  --allowed-origins LIST the function's ALLOWED_ORIGINS [ALLOWED_ORIGINS] (*)
  --max-body-bytes N     the function's MAX_BODY_BYTES [MAX_BODY_BYTES] (2097152)
  --max-batch-rows N     the function's MAX_BATCH_ROWS [MAX_BATCH_ROWS] (10000)
  --prediction-log-sample RATE
                         the function's PREDICTION_LOG_SAMPLE, the share of answered rows
                         logged for drift reports (docs/drift.md) [PREDICTION_LOG_SAMPLE] (0)
  --public               let anyone call it (grants allUsers roles/run.invoker); default: private
  --dry-run              run the checks, print the gcloud command, deploy nothing
  -h, --help             this help

A private function is smoke-tested with the token in ID_TOKEN if set, else with
`gcloud auth print-identity-token`. README "Deploy" explains every choice.
USAGE
}

die() {
  echo "deploy.sh: $*" >&2
  exit 1
}

# The value after a flag; refuses a missing one rather than swallowing the next flag.
value() {
  [[ $# -ge 2 && "$2" != --* ]] || die "$1 needs a value (see --help)"
  printf '%s' "$2"
}

positive_int() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"
}

NAME="${FUNCTION_NAME:-iris-predict}"
PROJECT="${CLOUDSDK_CORE_PROJECT:-}"
REGION="${REGION:-us-central1}"
RUNTIME="${RUNTIME:-python311}"
MEMORY="${MEMORY:-512Mi}"
CPU="${CPU:-1}"
CONCURRENCY="${CONCURRENCY:-8}"
MIN_INSTANCES="${MIN_INSTANCES:-0}"
MAX_INSTANCES="${MAX_INSTANCES:-3}"
TIMEOUT="${TIMEOUT:-60s}"
ALLOWED_ORIGINS="${ALLOWED_ORIGINS:-*}"
MAX_BODY_BYTES="${MAX_BODY_BYTES:-2097152}"
MAX_BATCH_ROWS="${MAX_BATCH_ROWS:-10000}"
PREDICTION_LOG_SAMPLE="${PREDICTION_LOG_SAMPLE:-0}"
PUBLIC=false
DRY_RUN=false

while (($#)); do
  arg="$1"
  shift
  if [[ "$arg" == --*=* ]]; then  # --flag=value: split, then treat like --flag value
    set -- "${arg#*=}" "$@"
    arg="${arg%%=*}"
  fi
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --public) PUBLIC=true ;;
    --dry-run) DRY_RUN=true ;;
    --name) NAME="$(value "$arg" "$@")"; shift ;;
    --project) PROJECT="$(value "$arg" "$@")"; shift ;;
    --region) REGION="$(value "$arg" "$@")"; shift ;;
    --runtime) RUNTIME="$(value "$arg" "$@")"; shift ;;
    --memory) MEMORY="$(value "$arg" "$@")"; shift ;;
    --cpu) CPU="$(value "$arg" "$@")"; shift ;;
    --concurrency) CONCURRENCY="$(value "$arg" "$@")"; shift ;;
    --min-instances) MIN_INSTANCES="$(value "$arg" "$@")"; shift ;;
    --max-instances) MAX_INSTANCES="$(value "$arg" "$@")"; shift ;;
    --timeout) TIMEOUT="$(value "$arg" "$@")"; shift ;;
    --allowed-origins) ALLOWED_ORIGINS="$(value "$arg" "$@")"; shift ;;
    --max-body-bytes) MAX_BODY_BYTES="$(value "$arg" "$@")"; shift ;;
    --max-batch-rows) MAX_BATCH_ROWS="$(value "$arg" "$@")"; shift ;;
    --prediction-log-sample) PREDICTION_LOG_SAMPLE="$(value "$arg" "$@")"; shift ;;
    *) die "unknown argument '$arg' (see --help)" ;;
  esac
done

positive_int --concurrency "$CONCURRENCY"
positive_int --max-instances "$MAX_INSTANCES"
positive_int --max-body-bytes "$MAX_BODY_BYTES"
positive_int --max-batch-rows "$MAX_BATCH_ROWS"
[[ "$PREDICTION_LOG_SAMPLE" =~ ^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$ ]] ||
  die "--prediction-log-sample must be a number from 0 to 1, got '$PREDICTION_LOG_SAMPLE'"
[[ "$MIN_INSTANCES" =~ ^[0-9]+$ ]] || die "--min-instances must be 0 or more, got '$MIN_INSTANCES'"
((MIN_INSTANCES <= MAX_INSTANCES)) ||
  die "--min-instances ($MIN_INSTANCES) exceeds --max-instances ($MAX_INSTANCES)"
# The env vars go to gcloud as one list split on ';' (gcloud topic escaping), since origins use ','.
[[ "$ALLOWED_ORIGINS" != *";"* ]] || die "--allowed-origins must not contain ';'"

# --- Preflight: everything that can be checked before anything is uploaded. ---------------
cd "$(dirname "${BASH_SOURCE[0]}")"  # gcloud uploads the current directory

command -v gcloud >/dev/null ||
  die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)"
if [[ -z "$PROJECT" ]]; then
  PROJECT="$(gcloud config get-value project 2>/dev/null || true)"
fi
[[ -n "$PROJECT" ]] ||
  die "no Google Cloud project: pass --project ID or run 'gcloud config set project ID'"

for file in main.py requirements.txt .gcloudignore; do
  [[ -f "$file" ]] || die "$file is missing from $PWD"
done
for file in model.joblib model.json; do
  [[ -f "$file" ]] || die "$file is missing: 'make model' writes it"
done
# A model pickled by another scikit-learn may load and answer wrongly; the function refuses it,
# so refuse to ship it in the first place.
trained_with="$(sed -n 's/^ *"scikit-learn": *"\([^"]*\)".*/\1/p' model.json)"
pinned="$(sed -n 's/^scikit-learn==\([^[:space:];#]*\).*/\1/p' requirements.txt)"
[[ -n "$trained_with" ]] ||
  die "model.json records no scikit-learn version; retrain with 'make model'"
[[ -n "$pinned" ]] || die "requirements.txt pins no scikit-learn version (scikit-learn==X.Y.Z)"
[[ "$trained_with" == "$pinned" ]] ||
  die "model.joblib was trained with scikit-learn $trained_with" \
    "but requirements.txt pins $pinned; retrain with 'make model'"

# --- The deploy. -------------------------------------------------------------------------
env_vars="^;^ALLOWED_ORIGINS=$ALLOWED_ORIGINS;MAX_BODY_BYTES=$MAX_BODY_BYTES"
env_vars+=";MAX_BATCH_ROWS=$MAX_BATCH_ROWS;THREADS=$CONCURRENCY"
env_vars+=";PREDICTION_LOG_SAMPLE=$PREDICTION_LOG_SAMPLE"
env_vars+=";GOOGLE_CLOUD_PROJECT=$PROJECT"  # lets log lines link to their request's trace
deploy=(gcloud functions deploy "$NAME" --gen2 --project="$PROJECT" --region="$REGION"
  --runtime="$RUNTIME" --source=. --entry-point=predict --trigger-http
  --memory="$MEMORY" --cpu="$CPU" --concurrency="$CONCURRENCY"
  --min-instances="$MIN_INSTANCES" --max-instances="$MAX_INSTANCES" --timeout="$TIMEOUT"
  --set-env-vars="$env_vars" --serve-all-traffic-latest-revision
  --quiet '--format=value(serviceConfig.uri)')
# Said either way, so a redeploy also takes allUsers away from a function that was public.
access=private
if $PUBLIC; then
  access=public
  deploy+=(--allow-unauthenticated)
else
  deploy+=(--no-allow-unauthenticated)
fi

if $DRY_RUN; then
  printf '%q ' "${deploy[@]}"
  echo
  exit 0
fi

echo "Deploying $NAME ($access) to project $PROJECT, region $REGION..." >&2
url="$("${deploy[@]}")" || die "gcloud functions deploy failed (its message is above)"
[[ -n "$url" ]] || die "gcloud reported no URL for $NAME"
echo "URL: $url"

# --- Smoke test: the live function answers the two requests every client makes. ---------
authorization=""
if ! $PUBLIC; then
  token="${ID_TOKEN:-}"
  if [[ -z "$token" ]]; then
    token="$(gcloud auth print-identity-token --quiet)" ||
      die "deployed, but could not get an identity token to smoke-test the private function;" \
        "set ID_TOKEN or run 'gcloud auth login'"
  fi
  authorization="Authorization: Bearer $token"
fi

# One request; prints the answer. The header comes on stdin so the token stays out of `ps`.
call() {
  curl --silent --show-error --fail-with-body --max-time 60 --retry 3 \
    --header @- "$@" "$url" <<<"$authorization"
}

metadata="$(call)" || die "smoke test: GET $url failed: $metadata"
[[ "$metadata" == *'"classes"'* ]] ||
  die "smoke test: GET $url answered no model metadata: $metadata"
answer="$(call --header 'Content-Type: application/json' \
  --data '{"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}')" ||
  die "smoke test: POST $url failed: $answer"
[[ "$answer" == *'"prediction"'* ]] || die "smoke test: POST $url answered no prediction: $answer"
echo "Smoke test passed: $answer"
