#!/usr/bin/env bash
# Deploy iris-predict to Cloud Run functions (gen2) with gcloud, smoke-test it, and move its
# traffic safely: a canary first, then promote or roll back. Or put it behind API Gateway,
# with an API key per consumer and a quota (docs/gateway.md).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./deploy.sh [options]                    deploy; all traffic goes to the new revision
       ./deploy.sh --canary PERCENT [options]   deploy with no traffic, smoke-test, route PERCENT %
       ./deploy.sh --promote [options]          all traffic to the latest revision
       ./deploy.sh --rollback [options]         all traffic back to the revision that served
                                                before the last deploy
       ./deploy.sh --gateway [options]          deploy private, behind API Gateway: every call
                                                needs an API key (docs/gateway.md)
       ./deploy.sh --new-key LABEL [--referrers PATTERN,...] [options]
                                                a new API key for the gateway, printed once
       ./deploy.sh --list-keys [options]        the gateway's API keys
       ./deploy.sh --revoke-key LABEL [options] delete the gateway's API key(s) labelled LABEL

A deploy uploads this directory as a gen2 HTTP function with entry point `predict`, then calls
it: GET (metadata) and POST the model's probe rows. Each deploy also records the revision that
served until then in the function's label `rollback-revision`, where --rollback reads it back
from any machine. Exits non-zero if anything fails.

--canary PERCENT (1 to 100) goes step by step:
  1. if all traffic follows the latest revision, pins it to that revision by name;
  2. deploys the new revision without --serve-all-traffic-latest-revision: it gets no traffic;
  3. tags the new revision `candidate`;
  4. smoke-tests the tag's URL: GET its metadata, then POST the same probe rows to it and to
     the function's URL and print "N/M answers agree, largest probability difference X";
     it passes only if all M predictions agree and X is at most --max-probability-diff
     (probes.py makes the rows from model.json: the average training row, the ends of the
     training range and beyond them, each category);
  5. only then routes PERCENT % of the traffic to the candidate.
  A failed smoke test moves no traffic, says so and exits non-zero.
--promote refuses a latest revision that serves no traffic (its canary failed).

--gateway goes step by step, each named if it fails; until step 7 the gateway keeps serving
the config it had:
  1. deploys the function private, as a plain deploy does (taking allUsers away);
  2. creates the gateway's service account NAME-gateway, if missing;
  3. lets it invoke the function's Cloud Run service, and nothing else;
  4. writes the API config from openapi.yaml: every path and method, the function's URL as
     backend and JWT audience, an API key (header x-api-key) on all but CORS preflights, and
     --quota-per-minute requests a minute per consumer;
  5. creates the API NAME, if missing;
  6. creates a new, immutable API config NAME-DATE-TIME from that file;
  7. creates the gateway NAME, or points it at the new config;
  8. enables the API's managed service, which API keys are restricted to;
  9. smoke-tests the gateway's URL: refused without a key, a CORS preflight passed to the
     function without one, then GET and POST answered with the key in API_KEY or else the
     key labelled deploy-smoke-test (made once, if missing).
--new-key restricts the key to the gateway's managed service and, with --referrers, to web
pages at those addresses (https://shop.example/*): what a key shipped in a page needs.

Options (each also read from the environment variable in brackets; flag wins):
  --name NAME            function name [FUNCTION_NAME] (iris-predict)
  --project ID           Google Cloud project [CLOUDSDK_CORE_PROJECT] (gcloud's configured project)
  --region REGION        region [REGION] (us-central1)
  --runtime RUNTIME      runtime [RUNTIME] (python314; the tests run on python311-314)
  --memory SIZE          memory per instance [MEMORY] (512Mi)
  --cpu N                CPUs per instance [CPU] (1)
  --concurrency N        requests per instance at once [CONCURRENCY] (32)
  --min-instances N      instances kept warm [MIN_INSTANCES] (0)
  --max-instances N      instance cap, the cost guard [MAX_INSTANCES] (3)
  --timeout DURATION     request timeout [TIMEOUT] (60s)
  --allowed-origins LIST the function's ALLOWED_ORIGINS [ALLOWED_ORIGINS] (*)
  --max-body-bytes N     the function's MAX_BODY_BYTES [MAX_BODY_BYTES] (2097152)
  --max-batch-rows N     the function's MAX_BATCH_ROWS [MAX_BATCH_ROWS] (10000)
  --max-probability-diff X
                         --canary: the largest difference allowed between a probability the
                         candidate answers and the serving one [MAX_PROBABILITY_DIFF] (0.05)
  --prediction-log-sample RATE
                         the function's PREDICTION_LOG_SAMPLE, the share of answered rows
                         logged for drift reports (docs/drift.md) [PREDICTION_LOG_SAMPLE] (0)
  --quota-per-minute N   --gateway: requests a minute each consumer may make [QUOTA_PER_MINUTE]
                         (600)
  --gateway-wait SECONDS --gateway: how long the smoke test retries while a new config or key
                         takes effect in Google's proxy [GATEWAY_WAIT] (120)
  --referrers LIST       --new-key: the web pages that may use the key, comma-separated
  --public               let anyone call it (grants allUsers roles/run.invoker); default: private
  --dry-run              run the checks, print the plan (every gcloud command), change nothing
  -h, --help             this help

A private function is smoke-tested with the token in ID_TOKEN if set, else with
`gcloud auth print-identity-token`. docs/deploy.md explains every choice.
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

# The tag that gives a canary's candidate revision its own URL.
CANDIDATE_TAG=candidate
# The function label that remembers the revision serving before the last deploy.
ROLLBACK_LABEL=rollback-revision
# The canary's probe rows come from the model's signature: probes.py prints them from model.json.
PROBES_COMMAND=(python3 probes.py model.json)

# The key the gateway's smoke test uses when API_KEY is not set.
SMOKE_KEY_LABEL=deploy-smoke-test

NAME="${FUNCTION_NAME:-iris-predict}"
PROJECT="${CLOUDSDK_CORE_PROJECT:-}"
REGION="${REGION:-us-central1}"
RUNTIME="${RUNTIME:-python314}"
MEMORY="${MEMORY:-512Mi}"
CPU="${CPU:-1}"
CONCURRENCY="${CONCURRENCY:-32}"  # measured on one CPU: docs/performance.md "Concurrency"
MIN_INSTANCES="${MIN_INSTANCES:-0}"
MAX_INSTANCES="${MAX_INSTANCES:-3}"
TIMEOUT="${TIMEOUT:-60s}"
ALLOWED_ORIGINS="${ALLOWED_ORIGINS:-*}"
MAX_BODY_BYTES="${MAX_BODY_BYTES:-2097152}"
MAX_BATCH_ROWS="${MAX_BATCH_ROWS:-10000}"
MAX_PROBABILITY_DIFF="${MAX_PROBABILITY_DIFF:-0.05}"
MODE=deploy
PERCENT=""
PREDICTION_LOG_SAMPLE="${PREDICTION_LOG_SAMPLE:-0}"
QUOTA_PER_MINUTE="${QUOTA_PER_MINUTE:-600}"
GATEWAY_WAIT="${GATEWAY_WAIT:-120}"
LABEL=""
REFERRERS=""
PUBLIC=false
DRY_RUN=false

set_mode() {
  [[ "$MODE" == deploy ]] || die "--$MODE and $1 cannot go together: choose one"
  MODE="${1#--}"
}

while (($#)); do
  arg="$1"
  shift
  if [[ "$arg" == --*=* ]]; then  # --flag=value: split, then treat like --flag value
    set -- "${arg#*=}" "$@"
    arg="${arg%%=*}"
  fi
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    --canary) set_mode "$arg"; PERCENT="$(value "$arg" "$@")"; shift ;;
    --promote|--rollback|--gateway|--list-keys) set_mode "$arg" ;;
    --new-key|--revoke-key) set_mode "$arg"; LABEL="$(value "$arg" "$@")"; shift ;;
    --referrers) REFERRERS="$(value "$arg" "$@")"; shift ;;
    --quota-per-minute) QUOTA_PER_MINUTE="$(value "$arg" "$@")"; shift ;;
    --gateway-wait) GATEWAY_WAIT="$(value "$arg" "$@")"; shift ;;
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
    --max-probability-diff) MAX_PROBABILITY_DIFF="$(value "$arg" "$@")"; shift ;;
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
if [[ "$MODE" == canary ]]; then
  [[ "$PERCENT" =~ ^([1-9][0-9]?|100)$ ]] ||
    die "--canary needs a percentage from 1 to 100, got '$PERCENT'"
fi
[[ "$MAX_PROBABILITY_DIFF" =~ ^(0(\.[0-9]+)?|1(\.0+)?)$ ]] ||
  die "--max-probability-diff must be a number from 0 to 1, got '$MAX_PROBABILITY_DIFF'"
positive_int --quota-per-minute "$QUOTA_PER_MINUTE"
[[ "$GATEWAY_WAIT" =~ ^[0-9]+$ ]] ||
  die "--gateway-wait must be 0 or more seconds, got '$GATEWAY_WAIT'"
# The gateway's service account is NAME-gateway, and account ids have at most 30 characters.
GATEWAY_ACCOUNT="$NAME-gateway"
if [[ "$MODE" == gateway ]]; then
  ! $PUBLIC || die "--gateway keeps the function private, so that callers need a key: drop --public"
  [[ "$GATEWAY_ACCOUNT" =~ ^[a-z][a-z0-9-]{4,28}[a-z0-9]$ ]] ||
    die "--gateway names its service account $GATEWAY_ACCOUNT, which is not a valid account" \
      "id (6 to 30 lower-case letters, digits and hyphens): choose a shorter --name"
fi
if [[ "$MODE" == new-key || "$MODE" == revoke-key ]]; then
  # Labels go into gcloud's --filter, so they stay plain.
  [[ "$LABEL" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$ ]] ||
    die "--$MODE needs a label of letters, digits, '.', '_' and '-' (at most 63), got '$LABEL'"
fi
if [[ -n "$REFERRERS" ]]; then
  [[ "$MODE" == new-key ]] || die "--referrers goes with --new-key"
  IFS=, read -r -a patterns <<<"$REFERRERS"
  for pattern in "${patterns[@]}"; do
    # Google ignores a website restriction without its scheme (https://shop.example/*).
    [[ "$pattern" =~ ^(https?://|\*)[^[:space:]]+$ ]] ||
      die "--referrers: '$pattern' is not a web address pattern such as https://shop.example/*"
  done
fi

# --- Preflight: everything that can be checked before anything is uploaded. ---------------
cd "$(dirname "${BASH_SOURCE[0]}")"  # gcloud uploads the current directory

command -v gcloud >/dev/null ||
  die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)"
if [[ "$MODE" == canary ]]; then
  command -v python3 >/dev/null || die "--canary compares answers with python3: install it"
fi
if [[ "$MODE" == gateway ]]; then
  python3 -c 'import yaml' 2>/dev/null ||
    die "--gateway writes its API config with python3 and PyYAML: pip install pyyaml"
fi
if [[ -z "$PROJECT" ]]; then
  PROJECT="$(gcloud config get-value project 2>/dev/null || true)"
fi
[[ -n "$PROJECT" ]] ||
  die "no Google Cloud project: pass --project ID or run 'gcloud config set project ID'"

if [[ "$MODE" == deploy || "$MODE" == canary || "$MODE" == gateway ]]; then
  for file in main.py requirements.txt .gcloudignore; do
    [[ -f "$file" ]] || die "$file is missing from $PWD"
  done
  for file in model.joblib model.json; do
    [[ -f "$file" ]] || die "$file is missing: 'make model' writes it"
  done
  # A model pickled by another scikit-learn may load and answer wrongly; the function refuses
  # it, so refuse to ship it in the first place.
  trained_with="$(sed -n 's/^ *"scikit-learn": *"\([^"]*\)".*/\1/p' model.json)"
  pinned="$(sed -n 's/^scikit-learn==\([^[:space:];#]*\).*/\1/p' requirements.txt)"
  [[ -n "$trained_with" ]] ||
    die "model.json records no scikit-learn version; retrain with 'make model'"
  [[ -n "$pinned" ]] || die "requirements.txt pins no scikit-learn version (scikit-learn==X.Y.Z)"
  [[ "$trained_with" == "$pinned" ]] ||
    die "model.joblib was trained with scikit-learn $trained_with" \
      "but requirements.txt pins $pinned; retrain with 'make model'"
fi

# --- Steps: run, or under --dry-run printed as the plan. -----------------------------------
exec 3>&1  # the plan goes to stdout even from inside $(...)

# Says what comes next: a progress line, or under --dry-run a comment in the plan.
current_step=""
step() {
  current_step="$*"
  if $DRY_RUN; then
    echo "# $*" >&3
  else
    echo "$*..." >&2
  fi
}

# Runs a command, or under --dry-run prints it as a shell would read it back.
run() {
  if ! $DRY_RUN; then
    "$@"
    return
  fi
  local word line=""
  for word in "$@"; do
    if [[ "$word" =~ ^[[:alnum:]_./=:@%+,-]+$ ]]; then
      line+="$word "
    elif [[ "$word" != *"'"* ]]; then
      line+="'$word' "
    else
      line+="$(printf '%q' "$word") "
    fi
  done
  echo "${line% }" >&3
}

where=(--project="$PROJECT" --region="$REGION")
update_traffic=(gcloud run services update-traffic "$NAME" "${where[@]}" --quiet)
traffic_fields=status.latestReadyRevisionName,status.traffic.revisionName,status.traffic.percent
traffic_fields+=,status.traffic.latestRevision,status.traffic.tag,status.traffic.url
describe_traffic=(gcloud run services describe "$NAME" "${where[@]}" --flatten=status.traffic
  "--format=csv[no-heading]($traffic_fields)")

# Parses describe_traffic's lines on stdin into: latest (the latest ready revision),
# latest_percent (its share of the traffic), serving (the revision with the largest share),
# following (the share that follows whichever revision is latest) and tag_url (the candidate
# tag's URL). Under --dry-run they are the placeholders the plan shows.
parse_traffic() {
  latest="" latest_percent=0 serving="" following=0 tag_url=""
  if $DRY_RUN; then
    latest=LATEST_REVISION serving=SERVING_REVISION tag_url=CANDIDATE_URL
    return
  fi
  local most=0 newest target percent follows tag address
  while IFS=, read -r newest target percent follows tag address; do
    latest="$newest"
    percent="${percent:-0}"
    if ((percent > most)); then
      most="$percent"
      serving="$target"
    fi
    if [[ "$target" == "$newest" ]]; then latest_percent=$((latest_percent + percent)); fi
    if [[ "$follows" == True ]]; then following=$((following + percent)); fi
    if [[ "$tag" == "$CANDIDATE_TAG" ]]; then tag_url="$address"; fi
  done
}

read_traffic() {
  local rows
  rows="$(run "${describe_traffic[@]}")" ||
    die "could not read the traffic of $NAME (gcloud's message is above);" \
      "--$MODE needs the function deployed: deploy it once with ./deploy.sh"
  parse_traffic <<<"$rows"
}

env_vars="^;^ALLOWED_ORIGINS=$ALLOWED_ORIGINS;MAX_BODY_BYTES=$MAX_BODY_BYTES"
env_vars+=";MAX_BATCH_ROWS=$MAX_BATCH_ROWS"
env_vars+=";PREDICTION_LOG_SAMPLE=$PREDICTION_LOG_SAMPLE"
env_vars+=";GOOGLE_CLOUD_PROJECT=$PROJECT"  # lets log lines link to their request's trace
deploy_command=(gcloud functions deploy "$NAME" --gen2 "${where[@]}"
  --runtime="$RUNTIME" --source=. --entry-point=predict --trigger-http
  --memory="$MEMORY" --cpu="$CPU" --concurrency="$CONCURRENCY"
  --min-instances="$MIN_INSTANCES" --max-instances="$MAX_INSTANCES" --timeout="$TIMEOUT"
  --set-env-vars="$env_vars" --quiet
  '--format=csv[no-heading](serviceConfig.uri,serviceConfig.revision)')
# Said either way, so a redeploy also takes allUsers away from a function that was public.
access=private
if $PUBLIC; then
  access=public
  deploy_command+=(--allow-unauthenticated)
else
  deploy_command+=(--no-allow-unauthenticated)
fi

# Deploys with the extra arguments given; sets url and revision (the new one).
deploy_revision() {
  local reported
  reported="$(run "${deploy_command[@]}" "$@")" ||
    die "gcloud functions deploy failed (its message is above)"
  url="" revision=""
  if $DRY_RUN; then
    url=FUNCTION_URL revision=NEW_REVISION
    return
  fi
  IFS=, read -r url revision <<<"$reported"
  [[ -n "$url" && -n "$revision" ]] || die "gcloud reported no URL or revision for $NAME: $reported"
  echo "URL: $url"
}

# --- Smoke tests: the live function answers what every client asks. ------------------------
authorization=""
authorize() {
  $PUBLIC && return
  local token="${ID_TOKEN:-}"
  if [[ -z "$token" ]]; then
    token="$(gcloud auth print-identity-token --quiet)" ||
      die "deployed, but could not get an identity token to smoke-test the private function;" \
        "set ID_TOKEN or run 'gcloud auth login'"
  fi
  authorization="Authorization: Bearer $token"
}

# One request to the URL in $1; prints the answer. The header comes on stdin so the token stays
# out of `ps`.
call() {
  local target="$1"
  shift
  curl --silent --show-error --fail-with-body --max-time 60 --retry 3 \
    --header @- "$@" "$target" <<<"$authorization"
}

# Fails unless GET on the URL in $1 answers the model's metadata.
check_metadata() {
  local metadata
  metadata="$(call "$1")" || die "smoke test: GET $1 failed: $metadata"
  [[ "$metadata" == *'"features"'* ]] ||
    die "smoke test: GET $1 answered no model metadata: $metadata"
}

post() {
  call "$1" --header 'Content-Type: application/json' --data "$2"
}

# Prints "N/M answers agree, largest probability difference X" for the answers in $2 (serving)
# and $3 (candidate) to the probes in $1; succeeds only if all M predictions agree and X <= $4.
# A regressor's predictions agree within a relative difference of $4; it has no probabilities.
compare_answers() {
  python3 - "$@" <<'PYTHON'
import json
import sys

probes, serving, candidate, limit = sys.argv[1:]
try:
    count = len(json.loads(probes)["instances"])
    serving, candidate = json.loads(serving), json.loads(candidate)
    predictions = list(zip(serving["predictions"], candidate["predictions"]))
    if "probabilities" in serving or "probabilities" in candidate:
        probabilities = list(zip(serving["probabilities"], candidate["probabilities"]))
        agree = sum(s == c for s, c in predictions)
        difference = max(abs(s.get(k, 0.0) - c.get(k, 0.0))
                         for s, c in probabilities for k in s.keys() | c.keys())
    else:  # a regressor: how far apart the values are, relative to their size
        probabilities = predictions
        gaps = [abs(s - c) / max(abs(s), abs(c), 1.0) for s, c in predictions]
        agree = sum(gap <= float(limit) for gap in gaps)
        difference = max(gaps)
except (ValueError, KeyError, TypeError, AttributeError) as error:
    print(f"the answers cannot be compared ({error!r})")
    sys.exit(1)
print(f"{agree}/{count} answers agree, largest probability difference {difference:.6f}")
complete = len(predictions) == len(probabilities) == count
sys.exit(0 if complete and agree == count and difference <= float(limit) else 1)
PYTHON
}

# --- The modes. ----------------------------------------------------------------------------
plain_deploy() {
  deploy_serving
  step "Smoke-testing $url: GET, then POST the model's probe rows"
  $DRY_RUN && return
  authorize
  check_metadata "$url"
  local answer probes
  probes="$("${PROBES_COMMAND[@]}")" || die "smoke test: probes.py could not read model.json"
  answer="$(post "$url" "$probes")" || die "smoke test: POST $url failed: $answer"
  [[ "$answer" == *'"predictions"'* ]] || die "smoke test: POST $url answered no predictions: $answer"
  echo "Smoke test passed: $answer"
}

# Records the revision serving now for --rollback, then deploys with all traffic.
deploy_serving() {
  step "Reading which revision serves now, to record it for --rollback"
  local rows=""
  rows="$(run "${describe_traffic[@]}" 2>/dev/null)" ||
    echo "deploy.sh: $NAME has no traffic to read (a first deploy?): nothing to record" >&2
  parse_traffic <<<"$rows"
  local record=()
  if [[ -n "$serving" ]]; then
    record=("--update-labels=$ROLLBACK_LABEL=$serving")
  fi
  step "Deploying $NAME ($access) to project $PROJECT, region $REGION, with all traffic"
  deploy_revision --serve-all-traffic-latest-revision "${record[@]}"
}

canary() {
  step "0. Reading the traffic of $NAME"
  read_traffic
  if ! $DRY_RUN; then
    [[ -n "$serving" ]] || die "--canary compares the candidate with the serving revision," \
      "and $NAME has none: deploy it once with ./deploy.sh"
    ((following == 0 || following == 100)) ||
      die "$following% of the traffic follows the latest revision, so a deploy would move it;" \
        "pin it by name first (gcloud run services update-traffic --to-revisions)"
  fi
  if ((following > 0)) || $DRY_RUN; then
    step "1. Pinning all traffic, which follows the latest revision, to $latest by name"
    run "${update_traffic[@]}" --to-revisions="$latest=100" >&2
  fi
  local before="$serving"
  step "2. Deploying the candidate ($access) with no traffic; recording $before for --rollback"
  deploy_revision "--update-labels=$ROLLBACK_LABEL=$before"
  local candidate="$revision"
  step "3. Tagging $candidate $CANDIDATE_TAG, then reading the tag's URL"
  run "${update_traffic[@]}" --update-tags="$CANDIDATE_TAG=$candidate" >&2
  read_traffic
  if ! $DRY_RUN; then
    [[ "$latest" == "$candidate" && -n "$tag_url" ]] ||
      die "the service shows no tagged candidate $candidate (latest: $latest); no traffic moved"
    ((latest_percent == 0)) ||
      die "the deploy gave $candidate $latest_percent% of the traffic before its smoke test;" \
        "./deploy.sh --rollback sends it all back to $before"
  fi
  step "4. Smoke-testing $tag_url: GET, then the probe rows beside $url"
  if ! $DRY_RUN; then
    authorize
    smoke_test_candidate "$candidate"
  fi
  step "5. Routing $PERCENT% of the traffic to $candidate"
  run "${update_traffic[@]}" --to-revisions="$candidate=$PERCENT" >&2
  $DRY_RUN || echo "Canary: $candidate serves $PERCENT% of the traffic; its own URL: $tag_url"
}

# The canary's smoke test of the candidate revision $1 at tag_url, against the function's url.
smoke_test_candidate() {
  local metadata candidate_answer serving_answer agreement probes
  probes="$("${PROBES_COMMAND[@]}")" || canary_failed "$1" "probes.py could not read model.json"
  metadata="$(call "$tag_url")" && [[ "$metadata" == *'"features"'* ]] ||
    canary_failed "$1" "GET $tag_url answered: $metadata"
  candidate_answer="$(post "$tag_url" "$probes")" ||
    canary_failed "$1" "POST $tag_url answered: $candidate_answer"
  serving_answer="$(post "$url" "$probes")" ||
    canary_failed "$1" "POST $url (the serving revision) answered: $serving_answer"
  agreement="$(compare_answers "$probes" "$serving_answer" "$candidate_answer" \
    "$MAX_PROBABILITY_DIFF")" ||
    canary_failed "$1" "$agreement (at most $MAX_PROBABILITY_DIFF allowed)"
  echo "Smoke test passed: $agreement"
}

canary_failed() {
  echo "$2" >&2
  die "smoke test of the candidate $1 failed, so no traffic moved to it: it serves none." \
    "Its own URL stays for a look: $tag_url"
}

promote() {
  step "Reading the traffic of $NAME"
  read_traffic
  if ! $DRY_RUN; then
    [[ -n "$latest" ]] || die "$NAME has no revision to promote"
    ((latest_percent > 0)) ||
      die "--promote refuses: the latest revision $latest serves no traffic, so its canary" \
        "did not pass; deploy again with --canary"
  fi
  step "Sending all traffic to the latest revision, $latest"
  run "${update_traffic[@]}" --to-latest >&2
  $DRY_RUN || echo "Promoted: $latest serves all traffic"
}

rollback() {
  step "Reading the revision that served before the last deploy (label $ROLLBACK_LABEL)"
  local target
  target="$(run gcloud functions describe "$NAME" "${where[@]}" \
    "--format=value(labels.$ROLLBACK_LABEL)")" ||
    die "could not read $NAME (gcloud's message is above)"
  if $DRY_RUN; then
    target=ROLLBACK_REVISION
  fi
  [[ -n "$target" ]] ||
    die "$NAME records no revision to roll back to: deploy.sh records one (label" \
      "$ROLLBACK_LABEL) at every deploy but the first"
  step "Sending all traffic back to $target"
  run "${update_traffic[@]}" --to-revisions="$target=100" >&2
  $DRY_RUN || echo "Rolled back: $target serves all traffic"
}

# --- API Gateway: API keys and quotas in front of the private function (docs/gateway.md). ---
gateway_where=(--location="$REGION" --project="$PROJECT")
service=""  # the API's managed service, which API keys are restricted to
spec_dir=""  # where --gateway writes the API config
switched=false  # whether the gateway serves the new config yet
previous=""  # the config the gateway served before, if it existed

# Runs a describe command quietly: succeeds if the resource exists. Under --dry-run it prints
# the command and fails, so the plan shows what a first deploy creates.
exists() {
  run "$@" >/dev/null 2>&1 && ! $DRY_RUN
}

# Fails the --gateway step under way, naming it and saying what serves now.
step_failed() {
  local why="${1:-}" serving="the gateway still serves the config it had"
  if [[ -z "$why" ]]; then
    why="gcloud's message is above"
  fi
  if $switched; then
    serving="the gateway already serves the new config"
    if [[ -n "$previous" ]]; then
      serving+="; gcloud api-gateway gateways update $NAME --api=$NAME --api-config=$previous"
      serving+=" --location=$REGION --project=$PROJECT takes it back"
    fi
  fi
  die "'$current_step' failed ($why); the later steps did not run" \
    "and $serving"
}

# Prints the API's managed service (MANAGED_SERVICE under --dry-run).
managed_service() {
  local found
  found="$(run gcloud api-gateway apis describe "$NAME" --project="$PROJECT" \
    '--format=value(managedService)')" || return 1
  if $DRY_RUN; then
    found=MANAGED_SERVICE
  fi
  [[ -n "$found" ]] && printf '%s' "$found"
}

# The names of the keys labelled $1 that are restricted to the managed service, one a line.
key_names() {
  # --verbosity=error: no warning that the filter's keys are in no key when there is none.
  run gcloud services api-keys list --project="$PROJECT" --verbosity=error \
    "--filter=displayName=$1 AND restrictions.apiTargets.service=$service" '--format=value(name)'
}

# Creates a key labelled $1, restricted to the managed service and to the web pages in $2 if
# any; prints its name (KEY_NAME under --dry-run).
create_key() {
  local restrictions=(--api-target=service="$service") name errors
  if [[ -n "${2:-}" ]]; then
    restrictions+=(--allowed-referrers="$2")
  fi
  # gcloud shows the created key on stderr, with its string: kept back unless gcloud fails, so
  # that the string shows once.
  errors="$(mktemp)"
  if ! name="$(run gcloud services api-keys create --project="$PROJECT" --display-name="$1" \
    "${restrictions[@]}" '--format=value(response.name)' 2>"$errors")"; then
    cat "$errors" >&2
    rm -f "$errors"
    return 1
  fi
  rm -f "$errors"
  if $DRY_RUN; then
    name=KEY_NAME
  fi
  printf '%s' "$name"
}

key_string() {
  run gcloud services api-keys get-key-string "$1" --project="$PROJECT" \
    '--format=value(keyString)'
}

gateway() {
  local email="$GATEWAY_ACCOUNT@$PROJECT.iam.gserviceaccount.com" config host
  local api=(--api="$NAME" --project="$PROJECT")
  step "1. Deploying $NAME private, as a plain deploy does"
  deploy_serving
  step "2. Creating the gateway's service account $email, if missing"
  if ! exists gcloud iam service-accounts describe "$email" --project="$PROJECT"; then
    run gcloud iam service-accounts create "$GATEWAY_ACCOUNT" --project="$PROJECT" \
      --display-name="API Gateway of $NAME" >&2 || step_failed
  fi
  step "3. Letting $email invoke the Cloud Run service of $NAME, and nothing else"
  # It prints the whole policy: left out.
  run gcloud functions add-invoker-policy-binding "$NAME" "${where[@]}" \
    --member="serviceAccount:$email" >/dev/null || step_failed
  # The config's folder stays after a --dry-run, for a look at the config.
  spec_dir="$(mktemp -d)"
  if ! $DRY_RUN; then
    trap 'rm -rf "$spec_dir"' EXIT
  fi
  local spec="$spec_dir/api-config.yaml"
  step "4. Writing the API config: backend $url, $QUOTA_PER_MINUTE requests a minute per" \
    "consumer, to $spec"
  python3 gateway/api_config.py --backend="$url" --quota-per-minute="$QUOTA_PER_MINUTE" \
    --out="$spec" || step_failed "gateway/api_config.py's message is above"
  step "5. Creating the API $NAME, if missing"
  if ! exists gcloud api-gateway apis describe "$NAME" --project="$PROJECT"; then
    run gcloud api-gateway apis create "$NAME" --project="$PROJECT" >&2 || step_failed
  fi
  config="$NAME-$(date -u +%Y%m%d-%H%M%S)"
  step "6. Creating the API config $config from $spec"
  run gcloud api-gateway api-configs create "$config" "${api[@]}" --openapi-spec="$spec" \
    --backend-auth-service-account="$email" >&2 || step_failed
  step "7. Pointing the gateway $NAME at $config"
  # The config it serves now, if it exists (nothing under --dry-run, as for a first deploy).
  previous="$(run gcloud api-gateway gateways describe "$NAME" "${gateway_where[@]}" \
    '--format=value(apiConfig.basename())' 2>/dev/null)" || previous=""
  if [[ -n "$previous" ]]; then
    run gcloud api-gateway gateways update "$NAME" "${api[@]}" --api-config="$config" \
      --location="$REGION" >&2 || step_failed
  else
    if $DRY_RUN; then
      echo "# (when it exists: gcloud api-gateway gateways update $NAME --api=$NAME" \
        "--project=$PROJECT --api-config=$config --location=$REGION)" >&3
    fi
    run gcloud api-gateway gateways create "$NAME" "${api[@]}" --api-config="$config" \
      --location="$REGION" >&2 || step_failed
  fi
  switched=true
  step "8. Enabling the API's managed service, which its keys are restricted to"
  service="$(managed_service)" || step_failed
  run gcloud services enable "$service" --project="$PROJECT" >&2 || step_failed
  step "9. Smoke-testing the gateway's URL: refused without a key, a CORS preflight passed" \
    "on without one, GET and POST answered with one"
  host="$(run gcloud api-gateway gateways describe "$NAME" "${gateway_where[@]}" \
    '--format=value(defaultHostname)')" || step_failed
  $DRY_RUN && return
  echo "Gateway: https://$host (config $config)"
  smoke_test_gateway "https://$host"
}

smoke_test_gateway() {
  local status headers key
  authorization=""
  status="$(curl --silent --output /dev/null --write-out '%{http_code}' --max-time 60 \
    "$1/")" || true
  [[ "$status" == 401 || "$status" == 403 ]] ||
    step_failed "GET $1/ without a key answered HTTP $status, not a refusal"
  # A preflight reaches the function, whose answer (from any origin) names the methods.
  headers="$(curl --silent --show-error --max-time 60 --request OPTIONS --dump-header - \
    --output /dev/null --header 'Origin: https://example.com' \
    --header 'Access-Control-Request-Method: POST' "$1/")" || step_failed "OPTIONS $1/ failed"
  [[ "${headers,,}" == *$'\n'"allow: get, post"* ]] ||
    step_failed "OPTIONS $1/ without a key did not reach the function: $headers"
  key="${API_KEY:-}"
  if [[ -z "$key" ]]; then
    key="$(smoke_key)" || step_failed "could not get the key $SMOKE_KEY_LABEL"
  fi
  authorization="x-api-key: $key"
  patiently answers "$1/" ||
    step_failed "the gateway did not answer with the key within $GATEWAY_WAIT s"
}

# The string of the key labelled deploy-smoke-test, made first if missing.
smoke_key() {
  local name
  name="$(key_names "$SMOKE_KEY_LABEL")" || return 1
  if [[ -z "$name" ]]; then
    echo "Making the key $SMOKE_KEY_LABEL for smoke tests (--revoke-key revokes it)" >&2
    name="$(create_key "$SMOKE_KEY_LABEL")" || return 1
  fi
  key_string "${name%%$'\n'*}"
}

# Runs "$@" until it succeeds, every 10 s for GATEWAY_WAIT seconds: a new config or key takes
# a while to reach every instance of Google's proxy.
patiently() {
  local deadline=$((SECONDS + GATEWAY_WAIT))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    echo "Retrying in 10 s..." >&2
    sleep 10
  done
}

# Succeeds if GET on the URL in $1 answers metadata and POST the model's probe rows
# predictions; else says what it got.
answers() {
  local metadata answer probes
  if ! metadata="$(call "$1")" || [[ "$metadata" != *'"features"'* ]]; then
    echo "GET $1 answered: $metadata" >&2
    return 1
  fi
  probes="$("${PROBES_COMMAND[@]}")" || { echo "probes.py could not read model.json" >&2; return 1; }
  if ! answer="$(post "$1" "$probes")" || [[ "$answer" != *'"predictions"'* ]]; then
    echo "POST $1 answered: $answer" >&2
    return 1
  fi
  echo "Smoke test passed: $answer"
}

new_key() {
  local names name key
  read_managed_service
  step "Checking that no key is labelled $LABEL yet"
  names="$(key_names "$LABEL")" || die "could not list the API keys (gcloud's message is above)"
  [[ -z "$names" ]] ||
    die "a key labelled $LABEL exists already: choose another label, or --revoke-key $LABEL"
  step "Creating the key $LABEL, restricted to $service" \
    "${REFERRERS:+and to web pages at $REFERRERS}"
  name="$(create_key "$LABEL" "$REFERRERS")" ||
    die "could not create the key $LABEL (gcloud's message is above)"
  step "Reading its key string"
  key="$(key_string "$name")" || die "could not read the string of the key $name"
  $DRY_RUN && return
  echo "API key $LABEL ($name), shown only this once: store it now." >&2
  printf '%s\n' "$key"
}

list_keys() {
  read_managed_service
  step "Listing the keys restricted to $service"
  local columns="displayName:label=LABEL,uid:label=UID,createTime.date('%Y-%m-%d'):label=CREATED"
  columns+=",restrictions.browserKeyRestrictions.allowedReferrers.join(','):label=REFERRERS"
  run gcloud services api-keys list --project="$PROJECT" \
    "--filter=restrictions.apiTargets.service=$service" "--format=table($columns)" ||
    die "could not list the API keys (gcloud's message is above)"
}

revoke_key() {
  local names name
  read_managed_service
  step "Finding the keys labelled $LABEL"
  names="$(key_names "$LABEL")" || die "could not list the API keys (gcloud's message is above)"
  if $DRY_RUN; then
    names=KEY_NAME
  fi
  [[ -n "$names" ]] || die "no key labelled $LABEL is restricted to $service: nothing to revoke" \
    "(--list-keys lists them)"
  step "Deleting them: calls with them are refused from now on"
  while read -r name; do
    run gcloud services api-keys delete "$name" --project="$PROJECT" >&2 2>/dev/null ||
      die "could not delete the key $name"
    $DRY_RUN || echo "Revoked $LABEL: $name"
  done <<<"$names"
}

read_managed_service() {
  step "Reading the managed service of the API $NAME"
  service="$(managed_service)" ||
    die "there is no API $NAME to hold keys (gcloud's message is above): deploy it with" \
      "./deploy.sh --gateway first"
}

if $DRY_RUN; then
  echo "# The plan of ./deploy.sh in $MODE mode for $NAME in project $PROJECT, region $REGION." \
    "Names in capitals are read from Google Cloud as it runs."
fi
case "$MODE" in
  deploy) plain_deploy ;;
  canary) canary ;;
  promote) promote ;;
  rollback) rollback ;;
  gateway) gateway ;;
  new-key) new_key ;;
  list-keys) list_keys ;;
  revoke-key) revoke_key ;;
esac
