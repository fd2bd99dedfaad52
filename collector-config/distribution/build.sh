#!/usr/bin/env bash
# Builds otelcol-llm, the collector distribution of this directory (main.go, components.go),
# and prints the binary's absolute path as the last line of stdout. Progress goes to stderr.
#
#   collector-config/distribution/build.sh [OUTDIR]
#
# OUTDIR defaults to ${XDG_CACHE_HOME:-$HOME/.cache}/otel-llm/otelcol-llm/<key>, where <key> hashes
# go.mod, go.sum, *.go, the Go version and the target platform. When OUTDIR already holds a binary
# built for that key, nothing is built: a second run with nothing changed takes well under a second.
# Go's own module and build caches (GOMODCACHE, GOCACHE) make a rebuild after a small change fast too.
set -euo pipefail

log() { printf 'build.sh: %s\n' "$*" >&2; }

if ! command -v go >/dev/null 2>&1; then
    log "error: 'go' is not on PATH. otelcol-llm needs Go >= 1.26 (go.mod says so) and the Go module proxy."
    exit 127
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
outdir="${1:-}"
if [ -n "$outdir" ]; then # relative to the caller's directory
    mkdir -p "$outdir"
    outdir="$(cd "$outdir" && pwd)"
fi

cd "$here"
key="$({
    cat go.mod go.sum
    for f in $(ls *.go | LC_ALL=C sort); do printf '%s\n' "$f"; cat "$f"; done
    go env GOVERSION GOOS GOARCH
} | sha256sum | cut -c1-16)"

outdir="${outdir:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-llm/otelcol-llm/$key}"
mkdir -p "$outdir"
bin="$outdir/otelcol-llm"
stamp="$outdir/.otelcol-llm.key"

if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    log "up to date (key $key): $bin"
    printf '%s\n' "$bin"
    exit 0
fi

log "building otelcol-llm (key $key) into $outdir; a cold build downloads the collector modules and takes minutes"
start=$SECONDS
tmp="$(mktemp "$outdir/.otelcol-llm.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
# -trimpath and -s -w as the collector's own builder does: no local paths, no symbol tables.
go build -buildvcs=false -trimpath -ldflags="-s -w" -o "$tmp" . >&2
chmod 0755 "$tmp"
mv -f "$tmp" "$bin"
printf '%s\n' "$key" >"$stamp"
log "built in $((SECONDS - start))s: $bin ($(du -h "$bin" | cut -f1))"
printf '%s\n' "$bin"
