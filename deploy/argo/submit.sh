#!/bin/sh
# Submit a temporal-worker pipeline from a local checkout.
#
# Usage: deploy/argo/submit.sh <build|deploy|rollback|pipeline> [options] [-p name=value]...
#
#   build      temporal-worker-build for HEAD
#   deploy     temporal-worker-deploy of image-tag=HEAD (hosted also needs -p image-digest=...)
#   rollback   temporal-worker-rollback (-p revision=<n>; default: previous revision)
#   pipeline   alga-psa-build-migrate-deploy-with-temporal for HEAD
#
# Options:
#   --watch     follow the workflow until it finishes (argo submit --watch)
#   --dry-run   print the argo command instead of running it
#   -p k=v      extra/overriding workflow parameters (passed to argo as-is)
#
# Environment: ARGO_BIN (argo), ARGO_NAMESPACE (argo), GIT_REMOTE (origin).
#
# Why the checks: the pipelines clone the commit from the remote, so a dirty tree
# or an unpushed HEAD would build something other than what you are looking at,
# or fail late inside the cluster. build, deploy and pipeline refuse to run unless
# the tree is clean and HEAD is on the remote; rollback does not use HEAD.
set -eu

usage() {
    sed -n '2,17s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

die() {
    echo "submit.sh: $*" >&2
    exit 1
}

[ "$#" -ge 1 ] || usage
pipeline=$1
shift
case "$pipeline" in
    build) template=temporal-worker-build ;;
    deploy) template=temporal-worker-deploy ;;
    rollback) template=temporal-worker-rollback ;;
    pipeline) template=alga-psa-build-migrate-deploy-with-temporal ;;
    -h | --help) usage ;;
    *) echo "submit.sh: unknown pipeline '$pipeline'" >&2; usage ;;
esac

ARGO_BIN=${ARGO_BIN:-argo}
ARGO_NAMESPACE=${ARGO_NAMESPACE:-argo}
GIT_REMOTE=${GIT_REMOTE:-origin}
watch=""
dry_run=false
user_params=""
nl='
'

while [ "$#" -gt 0 ]; do
    case "$1" in
        --watch) watch="--watch" ;;
        --dry-run) dry_run=true ;;
        -p | --parameter)
            [ "$#" -ge 2 ] || die "$1 needs name=value"
            case "$2" in *=*) ;; *) die "parameter must be name=value: $2" ;; esac
            user_params="$user_params$2$nl"
            shift
            ;;
        -h | --help) usage ;;
        *) die "unknown option: $1" ;;
    esac
    shift
done

has_param() {
    printf '%s' "$user_params" | grep -q "^$1="
}

# https URL of the remote: the workflows clone over https with git-credentials.
remote_https_url() {
    # The configured URL, not `git remote get-url`: local insteadOf rewrites do not
    # apply inside the cluster.
    url=$(git config --get "remote.$GIT_REMOTE.url") || die "no git remote '$GIT_REMOTE'"
    case "$url" in
        git@*:*)
            host=${url#git@}
            host=${host%%:*}
            path=${url#*:}
            echo "https://$host/$path"
            ;;
        ssh://git@*)
            rest=${url#ssh://git@}
            echo "https://$rest"
            ;;
        *) echo "$url" ;;
    esac
}

check_clean_and_pushed() {
    git rev-parse --git-dir >/dev/null 2>&1 || die "not inside a git repository"
    if [ -n "$(git status --porcelain --untracked-files=normal)" ]; then
        git status --short >&2
        die "working tree is not clean: commit or stash first (the pipeline builds the pushed commit)"
    fi
    git fetch --quiet "$GIT_REMOTE" || die "git fetch $GIT_REMOTE failed"
    head=$(git rev-parse HEAD)
    if [ -z "$(git branch --remotes --contains "$head" 2>/dev/null | grep "^ *$GIT_REMOTE/" || true)" ]; then
        die "HEAD $head is not on $GIT_REMOTE: push it first"
    fi
}

set -- submit --namespace "$ARGO_NAMESPACE" --from "workflowtemplate/$template"
[ -z "$watch" ] || set -- "$@" "$watch"

case "$pipeline" in
    build | pipeline | deploy)
        check_clean_and_pushed
        head=$(git rev-parse HEAD)
        has_param repo-url || set -- "$@" --parameter "repo-url=$(remote_https_url)"
        if [ "$pipeline" = deploy ]; then
            has_param image-tag || set -- "$@" --parameter "image-tag=$head"
        else
            has_param commit-sha || set -- "$@" --parameter "commit-sha=$head"
        fi
        ;;
esac

# Append the user's parameters last (one per line, values may contain spaces).
while IFS= read -r param; do
    [ -n "$param" ] || continue
    set -- "$@" --parameter "$param"
done <<EOP
$user_params
EOP

if [ "$dry_run" = true ]; then
    printf '%s' "$ARGO_BIN"
    printf ' %s' "$@"
    printf '\n'
    exit 0
fi
exec "$ARGO_BIN" "$@"
