#!/bin/sh
# Deploy step (after promote): stop the draining Deployments of builds that no
# workflow needs any more.
#
# helm-upgrade.sh keeps the build being replaced running (chart value
# versioning.draining) because workflows stay pinned to the build that started
# them. Here:
#
#   1. read the release's versioning.draining (helm get values); empty: done
#   2. in a ready pod of the main Deployment: `alga-worker deployment status --json`
#      (the Worker Deployment's versions with Temporal's drainage status)
#   3. a draining build Temporal reports drained, or does not know at all, is
#      removed: helm upgrade --reuse-values --set-json versioning.draining=[rest]
#
# Never prunes on a failed or unreadable status: that fails the step (non-zero),
# and the builds keep running until a later run can tell. A still-draining,
# current or ramping build is always kept.
#
# Environment:
#   RELEASE, NAMESPACE, DEPLOYMENT
#   CHART_DIR         chart path (/src/deploy/helm/temporal-worker), the deployed commit's
#   HELM_TIMEOUT      how long --wait may take (10m)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env RELEASE NAMESPACE DEPLOYMENT CHART_DIR
require_cmd helm kubectl jq
HELM_TIMEOUT=${HELM_TIMEOUT:-10m}

[ -f "$CHART_DIR/Chart.yaml" ] || die "no chart at $CHART_DIR"

k() { kubectl --namespace "$NAMESPACE" "$@"; }

log "1/3 the builds $RELEASE keeps draining"
values=$(helm get values "$RELEASE" --namespace "$NAMESPACE" --all --output json) \
    || die "cannot read the values of $RELEASE (helm get values)"
draining=$(printf '%s' "$values" | jq -c '[(.versioning.draining // [])[] | tostring]') \
    || die "unexpected output from helm get values $RELEASE"
if [ "$draining" = "[]" ]; then
    log "no build is draining: nothing to prune"
    exit 0
fi
log "draining: $draining"

log "2/3 the Worker Deployment's versions, from a ready pod of deployment/$DEPLOYMENT"
deploy_json=$(k get deployment "$DEPLOYMENT" -o json) || die "cannot read deployment/$DEPLOYMENT"
container=$(printf '%s' "$deploy_json" | jq -r '.spec.template.spec.containers[0].name // empty') \
    || die "unexpected kubectl output for deployment/$DEPLOYMENT"
selector=$(printf '%s' "$deploy_json" \
    | jq -r '.spec.selector.matchLabels // {} | to_entries | map("\(.key)=\(.value)") | join(",")')
[ -n "$container" ] && [ -n "$selector" ] || die "deployment/$DEPLOYMENT has no container or no matchLabels selector"
pods_json=$(k get pods --selector "$selector" -o json) || die "cannot list the pods of deployment/$DEPLOYMENT"
pod=$(printf '%s' "$pods_json" | jq -r '
    [.items[]
     | select(.metadata.deletionTimestamp == null)
     | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))
     | .metadata.name] | first // empty') || die "unexpected kubectl output for the pods"
[ -n "$pod" ] || die "no ready pod of deployment/$DEPLOYMENT to ask Temporal from"

status=$(k exec "$pod" --container "$container" -- alga-worker deployment status --json) \
    || die "alga-worker deployment status failed in $pod: not pruning anything"
keep=$(printf '%s' "$status" | jq -c --argjson draining "$draining" '
    (.versions | if type == "array" then . else error("no versions") end) as $versions
    | [$draining[] as $id
       | ($versions | map(select(.build_id == $id)) | first) as $v
       | select($v != null and $v.status != "drained" and $v.drainage != "drained")
       | $id]') || die "unexpected output from alga-worker deployment status: not pruning anything"
pruned=$(jq -cn --argjson draining "$draining" --argjson keep "$keep" '$draining - $keep')

if [ "$pruned" = "[]" ]; then
    log "every draining build still has pinned workflows running: nothing to prune"
    exit 0
fi

log "3/3 drained (or unknown to Temporal): $pruned; still draining: $keep"
helm upgrade "$RELEASE" "$CHART_DIR" \
    --namespace "$NAMESPACE" \
    --reuse-values \
    --set-json "versioning.draining=$keep" \
    --wait \
    --timeout "$HELM_TIMEOUT" \
    --history-max 20 \
    --description "argo: prune drained versions $pruned" \
    || die "helm upgrade of $RELEASE to prune $pruned failed"
log "stopped the draining Deployments of $pruned"
