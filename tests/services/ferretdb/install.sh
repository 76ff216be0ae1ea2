#!/usr/bin/env bash
# Build FerretDB (a MongoDB-wire server in Go) for the test suite, into a cache dir outside the git tree.
#
# Usage: install.sh [TARGET_DIR]
#   TARGET_DIR defaults to ${OSMOSIS_FERRETDB_DIR:-${OSMOSIS_CACHE_DIR:-$HOME/.cache/osmosis-beam}/ferretdb/v$VERSION}
#   The binary is TARGET_DIR/bin/ferretdb.
#
# Why not `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2`: that builds, but the binary
# panics at start ("Invalid build/version/version.txt file content"), because FerretDB's release
# tooling generates build/version/version.txt and the module zip lacks it. So: fetch the module
# with the Go module proxy (`go mod download`), copy its source, write version.txt, `go build`.
# Needs Go >= 1.24 (`go` on PATH, $GO, or /usr/local/go/bin/go). Takes 2-4 minutes on 2 cores the
# first time; idempotent after that (a marker file holds the version). The last stdout line is the
# binary's path.
set -euo pipefail

FERRETDB_VERSION="1.24.2"
# Bump this when the build recipe below changes.
INSTALL_REV="1"
MARKER_CONTENT="ferretdb=v${FERRETDB_VERSION} rev=${INSTALL_REV}"
MODULE="github.com/FerretDB/FerretDB"

TARGET="${1:-${OSMOSIS_FERRETDB_DIR:-${OSMOSIS_CACHE_DIR:-$HOME/.cache/osmosis-beam}/ferretdb/v${FERRETDB_VERSION}}}"
MARKER="${TARGET}/.installed"
BIN="${TARGET}/bin/ferretdb"

die() { echo "ferretdb/install.sh: ERROR: $*" >&2; exit 1; }

is_installed() {
    [[ -f "$MARKER" && "$(cat "$MARKER" 2>/dev/null)" == "$MARKER_CONTENT" && -x "$BIN" ]]
}
if is_installed; then
    echo "ferretdb/install.sh: already installed ($MARKER_CONTENT)" >&2
    echo "$BIN"
    exit 0
fi

GO_BIN="${GO:-$(command -v go || true)}"
[[ -n "$GO_BIN" ]] || GO_BIN=/usr/local/go/bin/go
[[ -x "$GO_BIN" ]] || die "Go not found (looked at \$GO, PATH and /usr/local/go/bin/go); FerretDB needs Go >= 1.24 to build."
GO_VERSION="$("$GO_BIN" env GOVERSION)"
[[ "$GO_VERSION" =~ ^go1\.([0-9]+) ]] || die "cannot tell the Go version ($GO_VERSION)"
(( BASH_REMATCH[1] >= 24 )) || die "Go >= 1.24 required to build FerretDB v${FERRETDB_VERSION}, found $GO_VERSION."

mkdir -p "$(dirname "$TARGET")"
# Serialise concurrent installers (e.g. run_local.sh and a test fixture).
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TARGET}.lock"
    flock 9
    if is_installed; then
        echo "ferretdb/install.sh: already installed ($MARKER_CONTENT)" >&2
        echo "$BIN"
        exit 0
    fi
fi
WORK="$(mktemp -d "${TARGET}.tmp.XXXXXX")"
chmod 755 "$WORK"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT

echo "ferretdb/install.sh: building FerretDB v${FERRETDB_VERSION} with $GO_VERSION into $TARGET (2-4 minutes)" >&2
t0=$SECONDS
(
    cd "$WORK"
    export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0
    SRC_DIR="$("$GO_BIN" mod download -json "${MODULE}@v${FERRETDB_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -n "$SRC_DIR" && -f "$SRC_DIR/go.mod" ]] || die "go mod download ${MODULE}@v${FERRETDB_VERSION} failed (is the Go module proxy reachable?)"
    cp -r "$SRC_DIR" src
    chmod -R u+w src
    echo "v${FERRETDB_VERSION}" > src/build/version/version.txt
    mkdir -p bin
    (cd src && "$GO_BIN" build -trimpath -ldflags="-s -w" -o ../bin/ferretdb ./cmd/ferretdb) >&2 \
        || die "go build of FerretDB v${FERRETDB_VERSION} failed"
    version_line="$(./bin/ferretdb --version | head -1)"
    [[ "$version_line" == "version: v${FERRETDB_VERSION}" ]] || die "the built binary says '$version_line'"
    rm -rf src
    echo "$MARKER_CONTENT" > .installed
)
rm -rf "$TARGET"
mv "$WORK" "$TARGET"
trap - EXIT
echo "ferretdb/install.sh: installed ($MARKER_CONTENT) in $((SECONDS - t0)) s" >&2
echo "$BIN"
