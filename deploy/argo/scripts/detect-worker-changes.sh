#!/bin/sh
# Decide whether the Temporal worker needs a new image and deploy.
#
# Usage: detect-worker-changes.sh <repo-dir> <deployed-sha-or-empty> <new-sha>
#
# Prints exactly "true" or "false" on stdout (diagnostics go to stderr), so the
# composite pipeline can use the output as a `when` condition. Only paths that end
# up in the image or in the chart count: src/, deploy/docker/, deploy/helm/ and
# pyproject.toml. Docs, tests and the Argo templates themselves do not trigger a build.
#
# Conservative on purpose: with no deployed commit (first deploy) or a deployed tag
# that is not a commit in this history (e.g. "latest", or a force-pushed branch),
# the answer is "true"; rebuilding needlessly costs minutes, skipping wrongly ships
# stale code.
#
# Exit codes: 0 decision printed, 1 repository or new commit unusable, 2 usage.
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

WORKER_PATHS="src/ deploy/docker/ deploy/helm/ pyproject.toml"

if [ "$#" -ne 3 ]; then
    echo "usage: ${0##*/} <repo-dir> <deployed-sha-or-empty> <new-sha>" >&2
    exit 2
fi
repo=$1
deployed=$2
new=$3

require_cmd git
[ -n "$new" ] || die "new commit must not be empty"
git -C "$repo" rev-parse --git-dir >/dev/null 2>&1 || die "not a git repository: $repo"
git -C "$repo" cat-file -e "${new}^{commit}" 2>/dev/null \
    || die "new commit $new is not in $repo (clone deeper or fetch it first)"

if [ -z "$deployed" ]; then
    log "no deployed commit recorded: first deploy, build needed"
    echo true
    exit 0
fi

if ! git -C "$repo" cat-file -e "${deployed}^{commit}" 2>/dev/null; then
    log "deployed version '$deployed' is not a commit in this history: build to be safe"
    echo true
    exit 0
fi

# The path list is split into separate pathspecs on purpose.
# shellcheck disable=SC2086
changed=$(git -C "$repo" diff --name-only "$deployed" "$new" -- $WORKER_PATHS) \
    || die "git diff $deployed $new failed: cannot tell what changed"

if [ -n "$changed" ]; then
    log "worker files changed between $deployed and $new:"
    printf '%s\n' "$changed" | sed 's/^/  /' >&2
    echo true
else
    log "no worker files changed between $deployed and $new"
    echo false
fi
