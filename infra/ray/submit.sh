#!/usr/bin/env bash
# Submit the pipeline to a Ray cluster as a job, from the repository root:
#
#   RAY_ADDRESS=http://head:8265 infra/ray/submit.sh --results /shared/results/<name> [dvc repro args]
#
# Ray uploads the working directory without .git (and without what .gitignore lists: DVC outputs,
# its cache, .venv), and DVC needs the repository: this bundles HEAD into .ray-job/ (which git
# ignores through .git/info/exclude, so Ray still uploads it) for infra/ray/job.sh to restore.
# Uncommitted changes travel as files and show as changes in the job's commit.
#
# These reach the job when set here (else the cluster's own environment must have them):
# MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD, PIPELINE_SHARED_DIR.
# The token: RAY_AUTH_MODE=token and the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN_PATH).
set -euo pipefail

root="$(git rev-parse --show-toplevel)"
cd "$root"
mkdir -p .ray-job
grep -qx '/.ray-job/' .git/info/exclude 2>/dev/null || echo '/.ray-job/' >> .git/info/exclude
git bundle create .ray-job/repo.bundle HEAD 2>/dev/null
runtime_env="$(python3 - <<'PY'
import json, os
keys = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
        "PIPELINE_SHARED_DIR")
print(json.dumps({"env_vars": {k: os.environ[k] for k in keys if os.environ.get(k)}}))
PY
)"
exec ray job submit --working-dir . --runtime-env-json "$runtime_env" -- \
  bash infra/ray/job.sh "$@"
