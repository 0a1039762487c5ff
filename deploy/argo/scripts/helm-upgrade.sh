#!/bin/sh
# Deploy step: install or upgrade the temporal-worker chart with the new image tag.
#
# The chart comes from the worker repository at the same commit as the image, so
# chart and code always match. Environment-specific values come from the config
# repository; the image is set on top with --set-string, which keeps the config
# repository free of per-build churn.
#
# Environment:
#   RELEASE, NAMESPACE      helm release and namespace (alga-psa-temporal-worker, msp)
#   CHART_DIR               chart path (/src/deploy/helm/temporal-worker)
#   CONFIG_DIR              checkout of the config repository
#   VALUES_FILE             path inside CONFIG_DIR; empty: alga-psa/<ENVIRONMENT>.values.yaml
#   ENVIRONMENT             hosted, staging, ...
#   IMAGE_REPOSITORY        <registry>/temporal-worker
#   IMAGE_TAG               the commit sha
#   IMAGE_DIGEST            optional sha256:... of that tag (the chart then pulls tag@digest)
#   HELM_TIMEOUT            how long --wait may take (10m)
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env RELEASE NAMESPACE CHART_DIR IMAGE_REPOSITORY IMAGE_TAG
require_cmd helm
CONFIG_DIR=${CONFIG_DIR:-/config}
ENVIRONMENT=${ENVIRONMENT:-hosted}
VALUES_FILE=${VALUES_FILE:-"alga-psa/$ENVIRONMENT.values.yaml"}
HELM_TIMEOUT=${HELM_TIMEOUT:-10m}
IMAGE_DIGEST=${IMAGE_DIGEST:-}

[ -f "$CHART_DIR/Chart.yaml" ] || die "no chart at $CHART_DIR"
values_path="$CONFIG_DIR/$VALUES_FILE"
[ -f "$values_path" ] || die "values file not found in the config repository: $VALUES_FILE"

set -- --set-string "image.repository=$IMAGE_REPOSITORY" --set-string "image.tag=$IMAGE_TAG"
case "$IMAGE_DIGEST" in
    '') ;;
    sha256:*) set -- "$@" --set-string "image.digest=$IMAGE_DIGEST" ;;
    *) die "image digest must start with sha256: (got '$IMAGE_DIGEST')" ;;
esac

if [ -f "$CHART_DIR/Chart.lock" ]; then
    retry 3 5 helm dependency build "$CHART_DIR"
fi

log "helm upgrade --install $RELEASE ($NAMESPACE) image $IMAGE_REPOSITORY:$IMAGE_TAG${IMAGE_DIGEST:+@$IMAGE_DIGEST}, values $VALUES_FILE"
helm upgrade "$RELEASE" "$CHART_DIR" \
    --install \
    --namespace "$NAMESPACE" \
    --values "$values_path" \
    "$@" \
    --wait \
    --timeout "$HELM_TIMEOUT" \
    --history-max 20 \
    --description "argo: image $IMAGE_TAG, env $ENVIRONMENT"

helm history "$RELEASE" --namespace "$NAMESPACE" --max 3 >&2
