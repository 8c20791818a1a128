#!/usr/bin/env bash
# A shared MLflow tracking server: PostgreSQL store, proxied artifacts, basic auth, Host allow-list.
#
#   MLFLOW_BACKEND_STORE_URI      postgresql://user:password@host:5432/mlflow   (required)
#   MLFLOW_ARTIFACTS_DESTINATION  s3://bucket/mlflow, or a path on shared storage (required)
#   MLFLOW_AUTH_ADMIN_PASSWORD    the admin's password, from a secret, never from a file in git (required)
#   MLFLOW_ALLOWED_HOSTS          the Host headers clients use, e.g. mlflow.example.org,mlflow:5000 (required)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  the auth app's CSRF key, a secret, the same on every replica (required)
#   MLFLOW_AUTH_DATABASE_URI      where users and permissions live (default: the tracking store)
#   MLFLOW_HOST, MLFLOW_PORT, MLFLOW_WORKERS   default 0.0.0.0, 5000, 4
#
# Clients set MLFLOW_TRACKING_URI=http://<host>:<port> with MLFLOW_TRACKING_USERNAME and
# MLFLOW_TRACKING_PASSWORD (infra/README.md).
set -euo pipefail

missing=()
for name in MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION MLFLOW_AUTH_ADMIN_PASSWORD \
            MLFLOW_ALLOWED_HOSTS MLFLOW_FLASK_SERVER_SECRET_KEY; do
  [[ -n "${!name:-}" ]] || missing+=("$name")
done
if (( ${#missing[@]} )); then
  echo "serve.sh: set ${missing[*]} (see the comments at the top of $0)" >&2
  exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
config="$(mktemp "${TMPDIR:-/tmp}/mlflow-auth.XXXXXX.ini")"  # mode 600: it holds the DB password
trap 'rm -f "$config"' EXIT
auth_db="${MLFLOW_AUTH_DATABASE_URI:-$MLFLOW_BACKEND_STORE_URI}"
# configparser reads the file with interpolation: a % in the password is written as %%
while IFS= read -r line; do
  if [[ "$line" == database_uri\ =* ]]; then line="database_uri = ${auth_db//%/%%}"; fi
  printf '%s\n' "$line"
done < "$here/basic_auth.ini" > "$config"
export MLFLOW_AUTH_CONFIG_PATH="$config"

# The store URI (with its password) and the artifacts destination reach `mlflow server` through
# the environment (its --backend-store-uri and --artifacts-destination read these variables), never
# through its command line, which every user of the machine can read in `ps`.
export MLFLOW_BACKEND_STORE_URI MLFLOW_ARTIFACTS_DESTINATION
mlflow server \
  --app-name basic-auth \
  --serve-artifacts \
  --allowed-hosts "$MLFLOW_ALLOWED_HOSTS" \
  --host "${MLFLOW_HOST:-0.0.0.0}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-4}" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null; wait "$server"; rm -f "$config"' TERM INT
wait "$server"
