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
# MLFLOW_TRACKING_URI and PIPELINE_SHARED_DIR. Credentials never travel with a job: the runtime env
# is on `ray job submit`'s command line and kept in the job's metadata, which every user of the
# cluster can read. The nodes hold them: ~/.mlflow/credentials (the cluster launcher YAMLs copy
# yours) or the mlflow-client Secret (Kubernetes); infra/README.md.
# The token: RAY_AUTH_MODE=token and the cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN_PATH).
set -euo pipefail

if [[ "${MLFLOW_TRACKING_URI:-}" =~ ^[a-z+]+://[^/@]*:[^/@]*@ ]]; then
  echo "submit.sh: MLFLOW_TRACKING_URI carries a password; it would be stored in the job's" \
       "metadata. Put the credentials on the nodes (~/.mlflow/credentials) and submit the URI" \
       "without them" >&2
  exit 2
fi
for secret in MLFLOW_TRACKING_PASSWORD MLFLOW_TRACKING_TOKEN; do
  if [[ -n "${!secret:-}" ]]; then
    echo "submit.sh: $secret is not sent with the job (job metadata is readable by every" \
         "cluster user); the nodes use their own ~/.mlflow/credentials" >&2
  fi
done

root="$(git rev-parse --show-toplevel)"
cd "$root"
mkdir -p .ray-job
grep -qx '/.ray-job/' .git/info/exclude 2>/dev/null || echo '/.ray-job/' >> .git/info/exclude
git bundle create .ray-job/repo.bundle HEAD 2>/dev/null
runtime_env="$(python3 - <<'PY'
import json, os
keys = ("MLFLOW_TRACKING_URI", "PIPELINE_SHARED_DIR")  # never a credential
print(json.dumps({"env_vars": {k: os.environ[k] for k in keys if os.environ.get(k)}}))
PY
)"
exec ray job submit --working-dir . --runtime-env-json "$runtime_env" -- \
  bash infra/ray/job.sh "$@"
