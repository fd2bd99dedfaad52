#!/usr/bin/env bash
# Builds the real backends the pipeline tests run against, from their Go modules:
#   Prometheus 3 (github.com/prometheus/prometheus/cmd/prometheus) and Jaeger v2 (github.com/jaegertracing/jaeger/cmd/jaeger).
#
#   tests/backends/build.sh [OUTDIR]      # OUTDIR default: $OTEL_LLM_BACKENDS_DIR or ${XDG_CACHE_HOME:-~/.cache}/otel-llm/backends
#
# Binaries are cached by version (OUTDIR/prometheus-<version>, OUTDIR/jaeger-<version>): a second run with
# the same versions builds nothing. Progress goes to stderr; stdout is only KEY=path lines, so CI can do
#   eval "$(tests/backends/build.sh)"; export PROMETHEUS3_BIN JAEGER_BIN
# Nothing here is committed: OUTDIR is outside the repository by default.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"   # = Prometheus 3.16.0

OUTDIR="${1:-${OTEL_LLM_BACKENDS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otel-llm/backends}}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
export CGO_ENABLED="${CGO_ENABLED:-0}"

log() { echo "build.sh: $*" >&2; }

command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"  # the official tarball's place
command -v go >/dev/null || { log "go not found on PATH (Go >= 1.26 and its module proxy are needed)"; exit 1; }

HERE="$(cd "$(dirname "$0")" && pwd)"
# Jaeger's version is the one its module (jaeger/go.mod) requires: that module exists because Jaeger's own
# go.mod has a replace directive, which `go install ...@version` refuses.
JAEGER_VERSION="$(awk '$1 == "github.com/jaegertracing/jaeger" {print $2}' "$HERE/jaeger/go.mod")"

# install NAME PACKAGE VERSION [LDFLAGS [TAGS]]: go install PACKAGE@VERSION into a private GOBIN, then rename to
# NAME-VERSION.
install() {
    local name="$1" package="$2" version="$3" ldflags="${4:-}" tags="${5:-}"
    local target="$OUTDIR/$name-$version"
    if [ -x "$target" ]; then
        log "$name $version: cached at $target"
        return 0
    fi
    local gobin start
    gobin="$(mktemp -d "$OUTDIR/.gobin-$name.XXXXXX")"
    start=$(date +%s)
    log "$name $version: go install $package@$version (first build takes minutes)"
    if ! GOBIN="$gobin" go install ${tags:+-tags="$tags"} ${ldflags:+-ldflags="$ldflags"} "$package@$version" >&2; then
        rm -rf "$gobin"
        log "$name $version: BUILD FAILED (module $package@$version)"
        return 1
    fi
    mv "$gobin/$(basename "$package")" "$target"
    rm -rf "$gobin"
    log "$name $version: built in $(( $(date +%s) - start ))s -> $target"
}

# build_in_module NAME MODULE_DIR PACKAGE VERSION [LDFLAGS]: go build PACKAGE inside our module MODULE_DIR (its go.mod
# pins VERSION).
build_in_module() {
    local name="$1" dir="$2" package="$3" version="$4" ldflags="${5:-}"
    local target="$OUTDIR/$name-$version"
    if [ -x "$target" ]; then
        log "$name $version: cached at $target"
        return 0
    fi
    local start
    start=$(date +%s)
    log "$name $version: go build $package in $dir (first build takes minutes)"
    if ! (cd "$dir" && go build ${ldflags:+-ldflags="$ldflags"} -o "$target.tmp" "$package") >&2; then
        rm -f "$target.tmp"
        log "$name $version: BUILD FAILED (module $package, version $version)"
        return 1
    fi
    mv "$target.tmp" "$target"
    log "$name $version: built in $(( $(date +%s) - start ))s -> $target"
}

status=0
# Module v0.3XX.Y is Prometheus 3.XX.Y; stamp that version into the binary as Prometheus' own release build does
# (otherwise /api/v1/status/buildinfo and --version say nothing). Build tag remove_all_sd (Prometheus' own switch,
# plugins/*.go) leaves out the cloud service discoveries (Kubernetes, AWS, Azure, GCE, ...): the tests use none,
# and the cold build needs about a third of the CPU time (3.9 instead of 10.4 CPU minutes). OTLP receiver,
# translator, TSDB and exemplar storage are the same code either way.
prometheus_release="$(echo "$PROMETHEUS_VERSION" | awk -F'[v.]' '{printf "%d.%d.%d", int($3 / 100), $3 % 100, $4}')"
install prometheus github.com/prometheus/prometheus/cmd/prometheus "$PROMETHEUS_VERSION" \
    "-X github.com/prometheus/common/version.Version=$prometheus_release" remove_all_sd || status=1
build_in_module jaeger "$HERE/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger "$JAEGER_VERSION" \
    "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$JAEGER_VERSION" || status=1

[ -x "$OUTDIR/prometheus-$PROMETHEUS_VERSION" ] && echo "PROMETHEUS3_BIN=$OUTDIR/prometheus-$PROMETHEUS_VERSION"
[ -x "$OUTDIR/jaeger-$JAEGER_VERSION" ] && echo "JAEGER_BIN=$OUTDIR/jaeger-$JAEGER_VERSION"
exit $status
