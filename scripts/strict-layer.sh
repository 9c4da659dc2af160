# shellcheck shell=bash
# The strict-AWS layer for the suites that drive the real local-server binary (browser-tests/run, contract/run):
# tests/src/bin/strict_proxy.rs, a pair of proxies in front of the emulators applying the rules AWS enforces and the
# emulators lack (docs/testing.md). Source this file, then:
#   strict_layer_up LOG     builds and starts it in front of AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_DYNAMODB, and
#                           points both variables at its proxies; its pid is in STRICT_LAYER_PID
#   strict_layer_down       stops it (call it from the script's exit trap)

STRICT_LAYER_PID=""

strict_layer_up() {
    local log=$1 root target_dir i line=""
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    (cd "$root" && cargo build --locked -p integration-tests --bin strict-proxy) >&2
    target_dir="${CARGO_TARGET_DIR:-$root/target}"
    [[ "$target_dir" == /* ]] || target_dir="$root/$target_dir"
    "$target_dir/debug/strict-proxy" >"$log" 2>&1 &
    STRICT_LAYER_PID=$!
    for ((i = 0; i < 100; i++)); do
        line="$(grep -m1 '^export AWS_ENDPOINT_URL_S3=' "$log" || true)"
        [[ -n "$line" ]] && break
        kill -0 "$STRICT_LAYER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z "$line" ]]; then
        tail -n 20 "$log" >&2
        return 1
    fi
    eval "$line"
    printf 'strict layer: S3 %s, DynamoDB %s (log: %s)\n' "$AWS_ENDPOINT_URL_S3" "$AWS_ENDPOINT_URL_DYNAMODB" "$log" >&2
}

strict_layer_down() {
    if [[ -n "$STRICT_LAYER_PID" ]] && kill -0 "$STRICT_LAYER_PID" 2>/dev/null; then
        kill -TERM "$STRICT_LAYER_PID" 2>/dev/null || true
        wait "$STRICT_LAYER_PID" 2>/dev/null || true
    fi
    STRICT_LAYER_PID=""
}
