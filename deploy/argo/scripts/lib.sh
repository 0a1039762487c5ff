# shellcheck shell=sh
# Helpers shared by the Argo step scripts. POSIX sh on purpose: the step images
# (docker:27-cli, aquasec/trivy, alpine/k8s, python:3.11-slim) do not all ship bash.

# Log to stderr so that stdout stays free for values a caller captures.
log() {
    printf '%s [%s] %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${0##*/}" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

# Fail early with a clear message instead of a confusing "not found" halfway through.
require_cmd() {
    for _cmd in "$@"; do
        command -v "$_cmd" >/dev/null 2>&1 || die "required command not found: $_cmd"
    done
}

require_env() {
    for _var in "$@"; do
        eval "_val=\${$_var:-}"
        [ -n "$_val" ] || die "required environment variable is empty: $_var"
    done
}

# retry <attempts> <initial-delay-seconds> <command...>: exponential backoff for
# operations that fail transiently (registry pushes, API calls, daemon start-up).
# RETRY_DELAY, when set, replaces every initial delay (the script tests set 0).
retry() {
    _attempts=$1
    _delay=${RETRY_DELAY:-$2}
    shift 2
    _n=1
    until "$@"; do
        if [ "$_n" -ge "$_attempts" ]; then
            log "giving up after $_n attempts: $*"
            return 1
        fi
        log "attempt $_n/$_attempts failed: $*; retrying in ${_delay}s"
        sleep "$_delay"
        _n=$((_n + 1))
        _delay=$((_delay * 2))
    done
}

# write_output <name> <value>: Argo reads step outputs from files (outputs.parameters
# valueFrom.path); OUTPUT_DIR defaults to /tmp/outputs, an emptyDir in every template.
write_output() {
    _dir=${OUTPUT_DIR:-/tmp/outputs}
    mkdir -p "$_dir"
    printf '%s' "$2" >"$_dir/$1"
}

is_true() {
    case "$1" in
        true | TRUE | True | yes | 1) return 0 ;;
        *) return 1 ;;
    esac
}

# duration_seconds <duration>: a Go/kubectl-style duration (300, 90s, 5m, 1h30m,
# 10m0s) in whole seconds on stdout; returns 1 for anything else.
duration_seconds() {
    printf '%s\n' "$1" | grep -Eqx '[0-9]+|([0-9]+h)?([0-9]+m)?([0-9]+s)?' || return 1
    [ -n "$1" ] || return 1
    _expr=$(printf '%s' "$1" | sed -e 's/h/*3600+/' -e 's/m/*60+/' -e 's/s//' -e 's/+$//')
    # The expression text itself is the arithmetic (dash does not evaluate a
    # variable's value as an expression).
    # shellcheck disable=SC2004
    echo $(($_expr))
}

# stderr_file: a fresh temporary file for a tool's stderr, so that the script can
# tell "not found" answers from real failures without mixing stderr into stdout.
stderr_file() {
    mktemp "${TMPDIR:-/tmp}/${0##*/}.stderr.XXXXXX"
}

# is_digest <value>: true for an image digest, sha256:<64 lowercase hex digits>.
is_digest() {
    case "$1" in
        sha256:????????????????????????????????????????????????????????????????) ;;
        *) return 1 ;;
    esac
    case "${1#sha256:}" in
        *[!0-9a-f]*) return 1 ;;
    esac
}
