#!/usr/bin/env bash
# Deploy iris-predict to Cloud Run functions (gen2) with gcloud, smoke-test it, and move its
# traffic safely: a canary first, then promote or roll back.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./deploy.sh [options]                    deploy; all traffic goes to the new revision
       ./deploy.sh --canary PERCENT [options]   deploy with no traffic, smoke-test, route PERCENT %
       ./deploy.sh --promote [options]          all traffic to the latest revision
       ./deploy.sh --rollback [options]         all traffic back to the revision that served
                                                before the last deploy

A deploy uploads this directory as a gen2 HTTP function with entry point `predict`, then calls
it: GET (metadata) and POST the tutorial's flower. Each deploy also records the revision that
served until then in the function's label `rollback-revision`, where --rollback reads it back
from any machine. Exits non-zero if anything fails.

--canary PERCENT (1 to 100) goes step by step:
  1. if all traffic follows the latest revision, pins it to that revision by name;
  2. deploys the new revision without --serve-all-traffic-latest-revision: it gets no traffic;
  3. tags the new revision `candidate`;
  4. smoke-tests the tag's URL: GET its metadata, then POST the same 8 probe flowers to it and
     to the function's URL and print "N/8 answers agree, largest probability difference X";
     it passes only if all 8 species agree and X is at most --max-probability-diff;
  5. only then routes PERCENT % of the traffic to the candidate.
  A failed smoke test moves no traffic, says so and exits non-zero.
--promote refuses a latest revision that serves no traffic (its canary failed).

Options (each also read from the environment variable in brackets; flag wins):
  --name NAME            function name [FUNCTION_NAME] (iris-predict)
  --project ID           Google Cloud project [CLOUDSDK_CORE_PROJECT] (gcloud's configured project)
  --region REGION        region [REGION] (us-central1)
  --runtime RUNTIME      runtime [RUNTIME] (python313; the tests run on python311-313)
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
# The canary's probe set: a typical flower of each species, the tutorial's flower, and flowers
# outside the training range on every side, where a changed model shows first. None lies near
# a boundary between species, so the same model retrained agrees on all of them.
PROBES='{"instances": [[5.0, 3.4, 1.5, 0.2], [5.9, 2.8, 4.3, 1.3], [6.5, 3.0, 5.8, 2.2],
  [3.0, 2.0, 1.0, 1.0], [2.0, 1.0, 0.5, 0.05], [9.0, 5.0, 8.0, 3.0], [8.5, 1.5, 7.5, 2.8],
  [4.0, 5.0, 0.8, 0.1]], "parameters": {"probabilities": true}}'

NAME="${FUNCTION_NAME:-iris-predict}"
PROJECT="${CLOUDSDK_CORE_PROJECT:-}"
REGION="${REGION:-us-central1}"
RUNTIME="${RUNTIME:-python313}"
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
    --promote|--rollback) set_mode "$arg" ;;
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

# --- Preflight: everything that can be checked before anything is uploaded. ---------------
cd "$(dirname "${BASH_SOURCE[0]}")"  # gcloud uploads the current directory

command -v gcloud >/dev/null ||
  die "gcloud not found: install the Google Cloud CLI (https://cloud.google.com/sdk/docs/install)"
if [[ "$MODE" == canary ]]; then
  command -v python3 >/dev/null || die "--canary compares answers with python3: install it"
fi
if [[ -z "$PROJECT" ]]; then
  PROJECT="$(gcloud config get-value project 2>/dev/null || true)"
fi
[[ -n "$PROJECT" ]] ||
  die "no Google Cloud project: pass --project ID or run 'gcloud config set project ID'"

if [[ "$MODE" == deploy || "$MODE" == canary ]]; then
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
step() {
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
  [[ "$metadata" == *'"classes"'* ]] ||
    die "smoke test: GET $1 answered no model metadata: $metadata"
}

post() {
  call "$1" --header 'Content-Type: application/json' --data "$2"
}

# Prints "N/M answers agree, largest probability difference X" for the answers in $2 (serving)
# and $3 (candidate) to the probes in $1; succeeds only if all M species agree and X <= $4.
compare_answers() {
  python3 - "$@" <<'PYTHON'
import json
import sys

probes, serving, candidate, limit = sys.argv[1:]
try:
    count = len(json.loads(probes)["instances"])
    serving, candidate = json.loads(serving), json.loads(candidate)
    species = list(zip(serving["species"], candidate["species"]))
    probabilities = list(zip(serving["probabilities"], candidate["probabilities"]))
    agree = sum(s == c for s, c in species)
    difference = max(abs(s.get(k, 0.0) - c.get(k, 0.0))
                     for s, c in probabilities for k in s.keys() | c.keys())
except (ValueError, KeyError, TypeError, AttributeError) as error:
    print(f"the answers cannot be compared ({error!r})")
    sys.exit(1)
print(f"{agree}/{count} answers agree, largest probability difference {difference:.6f}")
complete = len(species) == len(probabilities) == count
sys.exit(0 if complete and agree == count and difference <= float(limit) else 1)
PYTHON
}

# --- The modes. ----------------------------------------------------------------------------
plain_deploy() {
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
  step "Smoke-testing $url: GET, then POST the tutorial's flower"
  $DRY_RUN && return
  authorize
  check_metadata "$url"
  local answer
  answer="$(post "$url" '{"sl": 3.0, "sw": 2.0, "pl": 1.0, "pw": 1.0}')" ||
    die "smoke test: POST $url failed: $answer"
  [[ "$answer" == *'"prediction"'* ]] || die "smoke test: POST $url answered no prediction: $answer"
  echo "Smoke test passed: $answer"
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
  step "4. Smoke-testing $tag_url: GET, then the probe flowers beside $url"
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
  local metadata candidate_answer serving_answer agreement
  metadata="$(call "$tag_url")" && [[ "$metadata" == *'"classes"'* ]] ||
    canary_failed "$1" "GET $tag_url answered: $metadata"
  candidate_answer="$(post "$tag_url" "$PROBES")" ||
    canary_failed "$1" "POST $tag_url answered: $candidate_answer"
  serving_answer="$(post "$url" "$PROBES")" ||
    canary_failed "$1" "POST $url (the serving revision) answered: $serving_answer"
  agreement="$(compare_answers "$PROBES" "$serving_answer" "$candidate_answer" \
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

if $DRY_RUN; then
  echo "# The plan of ./deploy.sh in $MODE mode for $NAME in project $PROJECT, region $REGION." \
    "Names in capitals are read from Google Cloud as it runs."
fi
case "$MODE" in
  deploy) plain_deploy ;;
  canary) canary ;;
  promote) promote ;;
  rollback) rollback ;;
esac
