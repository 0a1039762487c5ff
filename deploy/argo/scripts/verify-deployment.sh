#!/bin/sh
# Deploy/rollback step: prove the worker really works, not only that pods exist.
#
#   1. the Deployment's rollout completed and its pod template runs the expected tag
#   2. the pods of the Deployment's *current* ReplicaSet (its pod-template-hash, found
#      by the Deployment's revision) are all Ready on the expected tag, within a bound
#   3. each of those pods answers /readyz on the health port (checked from inside the
#      pod, so no NetworkPolicy between the argo and worker namespaces is needed)
#   4. a healthCheckWorkflow run through Temporal is answered by a worker of the
#      expected build (`alga-worker health-check --expect-build-id`), started from
#      one of the new pods
#
# Old pods are ignored: right after `rollout status` the previous ReplicaSet's pods
# are still terminating (draining in-flight tasks for up to the graceful shutdown
# timeout). They are neither Ready nor going to be; waiting on them would fail a
# healthy rollout. Pods with a deletionTimestamp are ignored for the same reason.
# A new pod that crash-loops or cannot pull its image fails the step at once; one
# that is merely not Ready yet is waited for, at most READY_TIMEOUT.
#
# Environment:
#   NAMESPACE, DEPLOYMENT
#   EXPECTED_BUILD_ID   commit sha the pods must run; empty: the Deployment's current
#                       image tag (after a rollback the target is not known up front)
#   ROLLOUT_TIMEOUT     5m (kubectl rollout status --timeout)
#   READY_TIMEOUT       bound for step 2; default ROLLOUT_TIMEOUT (90s, 5m, 1h30m, 300)
#   POLL_INTERVAL       seconds between pod checks in step 2 (5)
#   HEALTH_PORT         8080
#   HEALTH_ATTEMPTS     attempts for the Temporal round trip (3)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env NAMESPACE DEPLOYMENT
require_cmd kubectl jq
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-5m}
READY_TIMEOUT=${READY_TIMEOUT:-$ROLLOUT_TIMEOUT}
POLL_INTERVAL=${POLL_INTERVAL:-5}
HEALTH_PORT=${HEALTH_PORT:-8080}
HEALTH_ATTEMPTS=${HEALTH_ATTEMPTS:-3}
EXPECTED_BUILD_ID=${EXPECTED_BUILD_ID:-}

ready_seconds=$(duration_seconds "$READY_TIMEOUT") \
    || die "READY_TIMEOUT must be a duration such as 300, 90s, 5m (got '$READY_TIMEOUT')"

k() { kubectl --namespace "$NAMESPACE" "$@"; }

# field <json> <jq filter>: one value out of a kubectl JSON answer; empty if absent.
field() {
    printf '%s' "$1" | jq -r "$2 // empty" || die "unexpected kubectl output (jq filter $2)"
}

log "1/4 rollout status of deployment/$DEPLOYMENT"
k rollout status "deployment/$DEPLOYMENT" --timeout "$ROLLOUT_TIMEOUT" >&2 \
    || die "deployment/$DEPLOYMENT did not complete its rollout within $ROLLOUT_TIMEOUT"

deploy_json=$(k get deployment "$DEPLOYMENT" -o json) || die "cannot read deployment/$DEPLOYMENT"
uid=$(field "$deploy_json" '.metadata.uid')
revision=$(field "$deploy_json" '.metadata.annotations["deployment.kubernetes.io/revision"]')
container=$(field "$deploy_json" '.spec.template.spec.containers[0].name')
image=$(field "$deploy_json" '.spec.template.spec.containers[0].image')
selector=$(field "$deploy_json" \
    '.spec.selector.matchLabels // {} | to_entries | map("\(.key)=\(.value)") | join(",")')
[ -n "$selector" ] || die "deployment/$DEPLOYMENT has no matchLabels selector"
[ -n "$container" ] || die "deployment/$DEPLOYMENT has no container"
[ -n "$image" ] || die "deployment/$DEPLOYMENT has no container image"
[ -n "$revision" ] || die "deployment/$DEPLOYMENT has no revision annotation yet"

image=${image%%@*}
deployed_tag=""
case "${image##*/}" in
    *:*) deployed_tag=${image##*:} ;;
esac
if [ -z "$EXPECTED_BUILD_ID" ]; then
    [ -n "$deployed_tag" ] || die "deployment/$DEPLOYMENT runs an untagged image ($image)"
    EXPECTED_BUILD_ID=$deployed_tag
    log "expected build id taken from the Deployment: $EXPECTED_BUILD_ID"
elif [ "$deployed_tag" != "$EXPECTED_BUILD_ID" ]; then
    die "deployment/$DEPLOYMENT runs $image, expected tag $EXPECTED_BUILD_ID"
fi

# The ReplicaSet the Deployment owns at its current revision is the new one; its
# pod-template-hash label tells its pods from the previous ReplicaSet's.
replicasets=$(k get replicasets --selector "$selector" -o json) \
    || die "cannot list the ReplicaSets of deployment/$DEPLOYMENT"
pod_hash=$(printf '%s' "$replicasets" | jq -r --arg uid "$uid" --arg rev "$revision" '
    [.items[]
     | select(any(.metadata.ownerReferences[]?; .kind == "Deployment" and .uid == $uid))
     | select(.metadata.annotations["deployment.kubernetes.io/revision"] == $rev)]
    | if length == 1 then .[0].metadata.labels["pod-template-hash"] // "" else "" end') \
    || die "unexpected kubectl output for the ReplicaSets"
[ -n "$pod_hash" ] || die "no single ReplicaSet of deployment/$DEPLOYMENT at revision $revision"

# One line per new, non-terminating pod: name, ready, image, waiting reason.
# shellcheck disable=SC2016
pod_lines='
    .items[]
    | select(.metadata.labels["pod-template-hash"] == $hash)
    | select(.metadata.deletionTimestamp == null)
    | [.metadata.name,
       (if any(.status.conditions[]?; .type == "Ready" and .status == "True") then "ready" else "not-ready" end),
       ((.spec.containers[] | select(.name == $c) | .image) // "-"),
       (([.status.containerStatuses[]? | select(.name == $c) | .state.waiting.reason // empty] | first) // "-")]
    | join(" ")'

log "2/4 pods of revision $revision (pod-template-hash $pod_hash) ready on tag $EXPECTED_BUILD_ID, within $READY_TIMEOUT"
deadline=$(($(date +%s) + ready_seconds))
while :; do
    pods_json=$(k get pods --selector "$selector,pod-template-hash=$pod_hash" -o json) \
        || die "cannot list the pods of deployment/$DEPLOYMENT"
    lines=$(printf '%s' "$pods_json" | jq -r --arg hash "$pod_hash" --arg c "$container" "$pod_lines") \
        || die "unexpected kubectl output for the pods"
    pods=""
    waiting=""
    while read -r name ready pod_image reason; do
        [ -n "$name" ] || continue
        case "$reason" in
            CrashLoopBackOff | ErrImagePull | ImagePullBackOff | InvalidImageName | \
                CreateContainerConfigError | CreateContainerError | RunContainerError)
                die "pod $name cannot run: $reason"
                ;;
        esac
        case "${pod_image%%@*}" in
            *:"$EXPECTED_BUILD_ID") ;;
            *) die "pod $name runs $pod_image, expected tag $EXPECTED_BUILD_ID" ;;
        esac
        [ "$ready" = "ready" ] || waiting="$waiting $name($reason)"
        pods="$pods $name"
    done <<EOF
$lines
EOF
    if [ -n "$pods" ] && [ -z "$waiting" ]; then
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        die "pods of revision $revision not ready within $READY_TIMEOUT:${waiting:- no pods found}"
    fi
    log "waiting for:${waiting:- the first pod}"
    sleep "$POLL_INTERVAL"
done

readyz_probe="import sys, urllib.request
r = urllib.request.urlopen('http://127.0.0.1:$HEALTH_PORT/readyz', timeout=5)
sys.exit(0 if r.status == 200 else 1)"

first_pod=""
for pod in $pods; do
    first_pod=${first_pod:-$pod}
    log "3/4 $pod: GET /readyz"
    k exec "$pod" --container "$container" -- python -c "$readyz_probe" \
        || die "pod $pod is not ready on :$HEALTH_PORT/readyz"
done

log "4/4 healthCheckWorkflow through Temporal from $first_pod, expecting build $EXPECTED_BUILD_ID"
retry "$HEALTH_ATTEMPTS" 5 k exec "$first_pod" --container "$container" -- \
    alga-worker health-check --expect-build-id "$EXPECTED_BUILD_ID" \
    || die "healthCheckWorkflow did not succeed for build $EXPECTED_BUILD_ID"

log "deployment/$DEPLOYMENT verified: build $EXPECTED_BUILD_ID is healthy"
