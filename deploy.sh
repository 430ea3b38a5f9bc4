#!/usr/bin/env bash
# Deploy iris-predict to Google Cloud Run functions (gen2). Not implemented yet.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./deploy.sh [--help]

Deploys the predict function with gcloud. Not implemented yet: until it is, run
  gcloud functions deploy iris-predict --gen2 --runtime=python311 --region=us-central1 \
    --source=. --entry-point=predict --trigger-http
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  *) usage >&2; exit 1 ;;
esac
