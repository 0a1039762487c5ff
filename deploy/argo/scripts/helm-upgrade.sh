#!/bin/sh
# Deploy step: install or upgrade the temporal-worker chart with the new image tag.
#
# The chart and the environment's values come from the worker repository at the
# same commit as the image, so chart, values and code always match:
# deploy/helm/values-<ENVIRONMENT>.yaml, next to the chart. (The main Alga chart's
# values in the config repository are not this chart's values: its strict schema
# rejects them.) An optional overlay from the config repository goes on top, and the
# image is set last with --set-string, which keeps both free of per-build churn.
#
# Environment:
#   RELEASE, NAMESPACE      helm release and namespace (temporal-worker-py, msp)
#   CHART_DIR               chart path (/src/deploy/helm/temporal-worker)
#   ENVIRONMENT             hosted, staging, ...: selects values-<ENVIRONMENT>.yaml
#   ENV_VALUES_DIR          where values-<ENVIRONMENT>.yaml lives (default: CHART_DIR/..)
#   CONFIG_DIR              checkout of the config repository (/config)
#   VALUES_FILE             optional overlay, a path inside CONFIG_DIR; empty: none
#   IMAGE_REPOSITORY        <registry>/temporal-worker
#   IMAGE_TAG               the commit sha
#   IMAGE_DIGEST            optional sha256:... of that tag (the chart then pulls tag@digest)
#   HELM_TIMEOUT            how long --wait may take (10m)
#
# Worker Versioning: workflows stay pinned to the build that started them, so the
# build being replaced keeps running in a draining Deployment (chart value
# versioning.draining). When the release exists and has versioning on
# (config.TEMPORAL_WORKER_DEPLOYMENT_NAME), the new list is the release's current
# versioning.draining plus the tag it runs now, minus IMAGE_TAG (a re-deploy of the
# same tag adds nothing). prune-drained-versions.sh removes builds once drained.
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env RELEASE NAMESPACE CHART_DIR IMAGE_REPOSITORY IMAGE_TAG
require_cmd helm jq
CONFIG_DIR=${CONFIG_DIR:-/config}
ENVIRONMENT=${ENVIRONMENT:-hosted}
ENV_VALUES_DIR=${ENV_VALUES_DIR:-"$CHART_DIR/.."}
VALUES_FILE=${VALUES_FILE:-}
HELM_TIMEOUT=${HELM_TIMEOUT:-10m}
IMAGE_DIGEST=${IMAGE_DIGEST:-}

[ -f "$CHART_DIR/Chart.yaml" ] || die "no chart at $CHART_DIR"
case "$ENVIRONMENT" in
    *[!a-z0-9-]*) die "environment must be a plain name such as hosted or staging (got '$ENVIRONMENT')" ;;
esac
env_values="$ENV_VALUES_DIR/values-$ENVIRONMENT.yaml"
[ -f "$env_values" ] || die "no values for environment '$ENVIRONMENT': $env_values does not exist"
set -- --values "$env_values"
values_desc="values-$ENVIRONMENT.yaml"
if [ -n "$VALUES_FILE" ]; then
    [ -f "$CONFIG_DIR/$VALUES_FILE" ] || die "values file not found in the config repository: $VALUES_FILE"
    set -- "$@" --values "$CONFIG_DIR/$VALUES_FILE"
    values_desc="$values_desc + config:$VALUES_FILE"
fi

set -- "$@" --set-string "image.repository=$IMAGE_REPOSITORY" --set-string "image.tag=$IMAGE_TAG"
if [ -n "$IMAGE_DIGEST" ]; then
    is_digest "$IMAGE_DIGEST" || die "image digest must be sha256:<64 hex digits> (got '$IMAGE_DIGEST')"
    set -- "$@" --set-string "image.digest=$IMAGE_DIGEST"
fi

# The release's values now (all, chart defaults included); a first install has none.
err=$(stderr_file)
if current_values=$(helm get values "$RELEASE" --namespace "$NAMESPACE" --all --output json 2>"$err"); then
    rm -f "$err"
    draining=$(printf '%s' "$current_values" | jq -c --arg new "$IMAGE_TAG" '
        if ((.config.TEMPORAL_WORKER_DEPLOYMENT_NAME // "") | tostring) == "" then empty
        else ((.versioning.draining // []) + [(.image.tag // "") | tostring])
             | map(tostring | select(. != "" and . != $new))
             | reduce .[] as $id ([]; if index([$id]) then . else . + [$id] end)
        end') || die "unexpected output from helm get values $RELEASE"
    if [ -n "$draining" ]; then
        count=$(printf '%s' "$draining" | jq 'length')
        [ "$count" -le 5 ] || die "$count builds would be draining ($draining), the chart allows 5: wait until prune-drained-versions.sh removes drained ones"
        log "worker versioning on: $count earlier build(s) keep running for their pinned workflows: $draining"
        set -- "$@" --set-json "versioning.draining=$draining"
    else
        log "worker versioning off in $RELEASE: no draining builds"
    fi
elif grep -q 'release: not found' "$err"; then
    rm -f "$err"
    log "$RELEASE is not installed yet: first install, nothing to drain"
else
    cat "$err" >&2
    rm -f "$err"
    die "cannot read the values of $RELEASE (helm get values)"
fi

if [ -f "$CHART_DIR/Chart.lock" ]; then
    retry 3 5 helm dependency build "$CHART_DIR"
fi

log "helm upgrade --install $RELEASE ($NAMESPACE) image $IMAGE_REPOSITORY:$IMAGE_TAG${IMAGE_DIGEST:+@$IMAGE_DIGEST}, values $values_desc"
helm upgrade "$RELEASE" "$CHART_DIR" \
    --install \
    --namespace "$NAMESPACE" \
    "$@" \
    --wait \
    --timeout "$HELM_TIMEOUT" \
    --history-max 20 \
    --description "argo: image $IMAGE_TAG, env $ENVIRONMENT" \
    || die "helm upgrade of $RELEASE to $IMAGE_TAG failed"

# Informational only: a failure here must not turn a good upgrade into a rollback.
helm history "$RELEASE" --namespace "$NAMESPACE" --max 3 >&2 \
    || log "warning: helm history $RELEASE failed after a successful upgrade"
