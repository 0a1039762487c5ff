#!/bin/sh
# Composite pipeline step: decide whether to build and deploy the Temporal worker.
#
# Environment:
#   MODE           auto | true | false (the build-temporal-worker parameter)
#   SRC_DIR        full clone of the worker repository (needs history for the diff)
#   COMMIT_SHA     the commit being shipped
#   NAMESPACE      namespace the worker runs in (msp)
#   DEPLOYMENT     the worker Deployment whose image tag records the deployed commit
#
# Writes "true"/"false" to $OUTPUT_DIR/build (Argo output parameter) and stdout.
# The deployed commit is read from the running Deployment rather than from helm
# values, because the Deployment is what actually runs; an absent Deployment
# means a first deploy.
set -eu

# shellcheck source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"

require_env MODE COMMIT_SHA
SRC_DIR=${SRC_DIR:-/src}

case "$MODE" in
    true | false)
        log "build-temporal-worker=$MODE: no change detection"
        decision=$MODE
        ;;
    auto)
        require_cmd kubectl git jq
        require_env NAMESPACE DEPLOYMENT
        # --ignore-not-found: an absent Deployment is an empty answer with exit 0.
        # Any failure (API unreachable, forbidden) stops the step: it must not
        # read as "no Deployment".
        deploy_json=$(kubectl get deployment "$DEPLOYMENT" --namespace "$NAMESPACE" \
            --ignore-not-found -o json) \
            || die "cannot read deployment/$DEPLOYMENT in $NAMESPACE"
        image=""
        if [ -n "$deploy_json" ]; then
            image=$(printf '%s' "$deploy_json" | jq -r '.spec.template.spec.containers[0].image // ""') \
                || die "unexpected kubectl output for deployment/$DEPLOYMENT"
        fi
        image=${image%%@*}
        deployed=""
        case "${image##*/}" in
            *:*) deployed=${image##*:} ;;
        esac
        log "deployed image: '${image:-<none>}', deployed commit: '${deployed:-<none>}'"
        decision=$(sh "$(dirname "$0")/detect-worker-changes.sh" "$SRC_DIR" "$deployed" "$COMMIT_SHA") \
            || die "change detection failed"
        ;;
    *)
        die "build-temporal-worker must be auto, true or false (got '$MODE')"
        ;;
esac

write_output build "$decision"
echo "$decision"
