#!/bin/sh
# Deploy/rollback step: prove the worker really works, not only that pods exist.
#
#   1. the Deployment's rollout completed
#   2. every (non-terminating) pod is Ready and runs the expected image tag
#   3. every pod answers /readyz on the health port (checked from inside the pod,
#      so no NetworkPolicy between the argo and worker namespaces is needed)
#   4. a healthCheckWorkflow run through Temporal is answered by a worker of the
#      expected build (`alga-worker health-check --expect-build-id`)
#
# Environment:
#   NAMESPACE, DEPLOYMENT
#   EXPECTED_BUILD_ID   commit sha the pods must run; empty: the Deployment's current
#                       image tag (after a rollback the target is not known up front)
#   ROLLOUT_TIMEOUT     5m
#   HEALTH_PORT         8080
#   HEALTH_ATTEMPTS     attempts for the Temporal round trip (3)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env NAMESPACE DEPLOYMENT
require_cmd kubectl
ROLLOUT_TIMEOUT=${ROLLOUT_TIMEOUT:-5m}
HEALTH_PORT=${HEALTH_PORT:-8080}
HEALTH_ATTEMPTS=${HEALTH_ATTEMPTS:-3}
EXPECTED_BUILD_ID=${EXPECTED_BUILD_ID:-}

k() { kubectl --namespace "$NAMESPACE" "$@"; }

log "1/4 rollout status of deployment/$DEPLOYMENT"
k rollout status "deployment/$DEPLOYMENT" --timeout "$ROLLOUT_TIMEOUT"

container=$(k get deployment "$DEPLOYMENT" -o 'jsonpath={.spec.template.spec.containers[0].name}')
image=$(k get deployment "$DEPLOYMENT" -o 'jsonpath={.spec.template.spec.containers[0].image}')
image=${image%%@*}
if [ -z "$EXPECTED_BUILD_ID" ]; then
    EXPECTED_BUILD_ID=${image##*:}
    log "expected build id taken from the Deployment: $EXPECTED_BUILD_ID"
fi
# The go-template is for kubectl, not for the shell.
# shellcheck disable=SC2016
selector=$(k get deployment "$DEPLOYMENT" \
    -o 'go-template={{range $k, $v := .spec.selector.matchLabels}}{{$k}}={{$v}},{{end}}')
selector=${selector%,}
[ -n "$selector" ] || die "deployment/$DEPLOYMENT has no matchLabels selector"

log "2/4 pods ($selector) ready and on tag $EXPECTED_BUILD_ID"
k wait pod --selector "$selector" --for condition=Ready --timeout "$ROLLOUT_TIMEOUT"
pods=$(k get pods --selector "$selector" \
    -o 'go-template={{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}')
[ -n "$pods" ] || die "no pods found for $selector"

readyz_probe="import sys, urllib.request
r = urllib.request.urlopen('http://127.0.0.1:$HEALTH_PORT/readyz', timeout=5)
sys.exit(0 if r.status == 200 else 1)"

for pod in $pods; do
    pod_image=$(k get pod "$pod" -o "jsonpath={.spec.containers[?(@.name==\"$container\")].image}")
    case "${pod_image%%@*}" in
        *:"$EXPECTED_BUILD_ID") ;;
        *) die "pod $pod runs $pod_image, expected tag $EXPECTED_BUILD_ID" ;;
    esac
    log "3/4 $pod: GET /readyz"
    k exec "$pod" --container "$container" -- python -c "$readyz_probe" \
        || die "pod $pod is not ready on :$HEALTH_PORT/readyz"
done

log "4/4 healthCheckWorkflow through Temporal, expecting build $EXPECTED_BUILD_ID"
retry "$HEALTH_ATTEMPTS" 5 k exec "deployment/$DEPLOYMENT" --container "$container" -- \
    alga-worker health-check --expect-build-id "$EXPECTED_BUILD_ID" \
    || die "healthCheckWorkflow did not succeed for build $EXPECTED_BUILD_ID"

log "deployment/$DEPLOYMENT verified: build $EXPECTED_BUILD_ID is healthy"
