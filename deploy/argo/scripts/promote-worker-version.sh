#!/bin/sh
# Deploy/rollback step: make a verified build the *current* version of the worker's
# Temporal Worker Deployment (Worker Versioning), so new workflow starts go to it.
# Runs only after verification: until then the new pods poll as a version that gets
# no new starts (the verification's health check is pinned to it), and runs pinned to
# the previous version keep running on the previous version.
#
#   1. pick a Ready, non-terminating pod of the Deployment that runs BUILD_ID
#   2. in it: `alga-worker deployment set-current BUILD_ID` (waits until that version
#      has polled and the routing change has reached the task queues)
#   3. in it: `alga-worker health-check --expect-build-id BUILD_ID --routed`: a run
#      started as callers start it must be answered by BUILD_ID
#
# The commands run inside a worker pod because that is where the Temporal address,
# namespace, TLS and API key are (and the step image has no temporal CLI).
# Worker versioning off in the release (TEMPORAL_WORKER_DEPLOYMENT_NAME empty:
# `alga-worker deployment` exits 8): nothing to promote, exit 0. Any other failure
# fails the step, and the pipeline rolls back.
#
# Rollback uses the same step after `helm rollback`: BUILD_ID empty takes the tag the
# Deployment runs now, so current points back at the rolled-back build.
#
# Environment:
#   NAMESPACE, DEPLOYMENT
#   BUILD_ID          version to make current; empty: the Deployment's image tag
#   PROMOTE_WAIT      seconds set-current may wait for pollers and routing (120)
#   HEALTH_ATTEMPTS   attempts of the routed health check (3)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env NAMESPACE DEPLOYMENT
require_cmd kubectl jq
BUILD_ID=${BUILD_ID:-}
PROMOTE_WAIT=${PROMOTE_WAIT:-120}
HEALTH_ATTEMPTS=${HEALTH_ATTEMPTS:-3}
EXIT_UNVERSIONED=8

case "$PROMOTE_WAIT" in
    '' | *[!0-9]*) die "PROMOTE_WAIT must be a number of seconds (got '$PROMOTE_WAIT')" ;;
esac

k() { kubectl --namespace "$NAMESPACE" "$@"; }

deploy_json=$(k get deployment "$DEPLOYMENT" -o json) || die "cannot read deployment/$DEPLOYMENT"
container=$(printf '%s' "$deploy_json" | jq -r '.spec.template.spec.containers[0].name // empty') \
    || die "unexpected kubectl output for deployment/$DEPLOYMENT"
image=$(printf '%s' "$deploy_json" | jq -r '.spec.template.spec.containers[0].image // empty')
selector=$(printf '%s' "$deploy_json" \
    | jq -r '.spec.selector.matchLabels // {} | to_entries | map("\(.key)=\(.value)") | join(",")')
[ -n "$container" ] && [ -n "$image" ] || die "deployment/$DEPLOYMENT has no container image"
[ -n "$selector" ] || die "deployment/$DEPLOYMENT has no matchLabels selector"

if [ -z "$BUILD_ID" ]; then
    image=${image%%@*}
    case "${image##*/}" in
        *:*) BUILD_ID=${image##*:} ;;
        *) die "deployment/$DEPLOYMENT runs an untagged image ($image): name BUILD_ID" ;;
    esac
    log "build id taken from the Deployment: $BUILD_ID"
fi

log "1/3 a ready pod of deployment/$DEPLOYMENT on build $BUILD_ID"
pods_json=$(k get pods --selector "$selector" -o json) || die "cannot list the pods of deployment/$DEPLOYMENT"
pod=$(printf '%s' "$pods_json" | jq -r --arg c "$container" --arg tag "$BUILD_ID" '
    [.items[]
     | select(.metadata.deletionTimestamp == null)
     | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))
     | select(any(.spec.containers[]; .name == $c
                  and ((.image | split("@")[0] | split("/") | last) as $ref
                       | ($ref | contains(":")) and ($ref | split(":") | last) == $tag)))
     | .metadata.name] | first // empty') || die "unexpected kubectl output for the pods"
[ -n "$pod" ] || die "no ready pod of deployment/$DEPLOYMENT runs build $BUILD_ID: nothing to promote"

log "2/3 $pod: alga-worker deployment set-current $BUILD_ID"
rc=0
k exec "$pod" --container "$container" -- \
    alga-worker deployment set-current "$BUILD_ID" --wait "$PROMOTE_WAIT" >&2 || rc=$?
if [ "$rc" -eq "$EXIT_UNVERSIONED" ]; then
    log "worker versioning is off in this release (TEMPORAL_WORKER_DEPLOYMENT_NAME empty): nothing to promote"
    exit 0
fi
[ "$rc" -eq 0 ] || die "could not make build $BUILD_ID current (alga-worker exit $rc)"

log "3/3 a healthCheckWorkflow started as callers start it is answered by $BUILD_ID"
retry "$HEALTH_ATTEMPTS" 5 k exec "$pod" --container "$container" -- \
    alga-worker health-check --expect-build-id "$BUILD_ID" --routed >&2 \
    || die "build $BUILD_ID is current, but new starts are not answered by it"

log "build $BUILD_ID is the current version: new workflow starts go to it"
