#!/usr/bin/env bash
# The pipeline as a Ray job, run on the head node in the job's copy of the repository
# (infra/ray/submit.sh submits it):
#
# 0. without .git (Ray does not upload it): the repository from .ray-job/repo.bundle, its HEAD the
#    submitter's, the uploaded files as its working tree;
# 1. dvc pull: what an earlier job pushed (the copy has no DVC cache: .gitignore keeps it out);
# 2. dvc repro: every stage joins this cluster (Ray sets RAY_ADDRESS for the job);
# 3. dvc push: the outputs go to the DVC remote (the copy is deleted when the job ends);
# 4. with --results DIR: the job's dvc.lock and small reports as a git commit, bundled in
#    DIR/results.bundle, and the sha256 of every output file in DIR/outputs.sha256; fetch them with
#    `git pull DIR/results.bundle HEAD && dvc pull && sha256sum -c DIR/outputs.sha256`.
#
# The cluster needs MLFLOW_TRACKING_URI (a tracking server; a sqlite file is refused on more than one
# node) and PIPELINE_SHARED_DIR (a directory every node mounts), from the nodes' environment or the
# job's runtime_env env_vars, and the tracking server's credentials from the nodes' own
# ~/.mlflow/credentials or environment, never from the job (infra/README.md).
set -euo pipefail

results=""
if [[ "${1:-}" == "--results" ]]; then
  [[ -n "${2:-}" ]] || { echo "job.sh: --results needs a directory" >&2; exit 2; }
  results="$2"
  shift 2
fi
if [[ ! -d .git && -f .ray-job/repo.bundle ]]; then
  git init -q
  git fetch -q .ray-job/repo.bundle HEAD
  git reset -q FETCH_HEAD  # HEAD and index at the submitter's commit; files as uploaded
fi
if ! remote="$(dvc remote default 2>/dev/null)" || [[ -z "$remote" ]]; then
  echo "job.sh: no default DVC remote: the job's outputs would be lost with its working copy;" \
       "add one (dvc remote add -d shared /shared/dvc-remote) and commit .dvc/config" >&2
  exit 2
fi
if [[ -z "${MLFLOW_TRACKING_URI:-}" ]]; then
  echo "job.sh: MLFLOW_TRACKING_URI is not set: runs would go to a sqlite file in the job's" \
       "temporary copy and be lost; point it at the tracking server (infra/mlflow)" >&2
  exit 2
fi
if [[ -n "$results" ]]; then mkdir -p "$results"; fi

base="$(git rev-parse HEAD)"
echo "job.sh: $(git log -1 --format='%h %s') on $(hostname), DVC remote '$remote'"
# --allow-missing: outputs no earlier job pushed are made by dvc repro; any other failure (the
# remote unreachable, a corrupt object) stops the job here
dvc pull --allow-missing
dvc repro "$@"
dvc push

if [[ -n "$results" ]]; then
  git add -A -- . ':!.ray-job'
  git -c user.name="ray job" -c user.email="ray-job@localhost" \
    commit -q --allow-empty -m "ray job: dvc repro $* (outputs in DVC remote '$remote')"
  git bundle create "$results/results.bundle" HEAD "^$base"
  # every file of every output dvc.lock records, to check a `dvc pull` with `sha256sum -c`
  python - "$results/outputs.sha256" <<'PY'
import hashlib, pathlib, sys, yaml
stages = yaml.safe_load(pathlib.Path("dvc.lock").read_text())["stages"]
outs = sorted({pathlib.Path(o["path"]) for s in stages.values() for o in s.get("outs", [])})
files = sorted(f for o in outs for f in ([o] if o.is_file() else o.rglob("*")) if f.is_file())
lines = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.as_posix()}\n" for f in files]
pathlib.Path(sys.argv[1]).write_text("".join(lines))
PY
  echo "job.sh: results in $results/results.bundle: git pull $results/results.bundle HEAD && dvc pull"
fi
