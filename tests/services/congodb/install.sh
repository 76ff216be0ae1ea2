#!/usr/bin/env bash
# Install CongoDB (the in-memory MongoDB-wire server inside the npm package
# @push.rocks/smartmongo) into a cache dir outside the git tree.
#
# Usage: install.sh [TARGET_DIR]
#   TARGET_DIR defaults to ${OSMOSIS_CACHE_DIR:-$HOME/.cache/osmosis-beam}/congodb
#
# A plain `npm install @push.rocks/smartmongo` fails (its other dependencies pin
# versions that do not resolve), so we unpack the tarball and install only the
# packages CongoDB itself imports, at pinned versions. Idempotent: when the
# marker file holds the expected version, nothing is done.
# On success the last line on stdout is the install dir.
set -euo pipefail

SMARTMONGO_VERSION="2.2.0"
# Bump this when the pinned dependency set below changes.
INSTALL_REV="1"
MARKER_CONTENT="smartmongo=${SMARTMONGO_VERSION} rev=${INSTALL_REV}"

TARGET="${1:-${OSMOSIS_CONGODB_DIR:-${OSMOSIS_CACHE_DIR:-$HOME/.cache/osmosis-beam}/congodb}}"
MARKER="${TARGET}/.installed"
ENTRY="${TARGET}/node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js"

die() { echo "congodb/install.sh: ERROR: $*" >&2; exit 1; }

is_installed() {
    [[ -f "$MARKER" && "$(cat "$MARKER" 2>/dev/null)" == "$MARKER_CONTENT" && -f "$ENTRY" ]]
}
if is_installed; then
    echo "congodb/install.sh: already installed ($MARKER_CONTENT)" >&2
    echo "$TARGET"
    exit 0
fi

command -v node >/dev/null 2>&1 || die "'node' not found on PATH. CongoDB needs Node.js >= 18 (e.g. 'apt-get install nodejs npm')."
command -v npm  >/dev/null 2>&1 || die "'npm' not found on PATH. CongoDB needs npm (e.g. 'apt-get install npm')."
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
(( NODE_MAJOR >= 18 )) || die "Node.js >= 18 required, found $(node --version)."

mkdir -p "$(dirname "$TARGET")"
# Serialise concurrent installers (e.g. parallel test workers).
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TARGET}.lock"
    flock 9
    if is_installed; then
        echo "congodb/install.sh: already installed ($MARKER_CONTENT)" >&2
        echo "$TARGET"
        exit 0
    fi
fi
# Build in a temp dir next to the target, then move into place (atomic-ish,
# so a concurrent or interrupted run never leaves a half-installed TARGET).
WORK="$(mktemp -d "${TARGET}.tmp.XXXXXX")"
chmod 755 "$WORK"
trap 'rm -rf "$WORK"' EXIT

echo "congodb/install.sh: installing @push.rocks/smartmongo@${SMARTMONGO_VERSION} into $TARGET" >&2
(
    cd "$WORK"
    npm pack --silent "@push.rocks/smartmongo@${SMARTMONGO_VERSION}" >/dev/null \
        || die "npm pack @push.rocks/smartmongo@${SMARTMONGO_VERSION} failed (is the npm registry reachable?)"
    TGZ="push.rocks-smartmongo-${SMARTMONGO_VERSION}.tgz"
    [[ -f "$TGZ" ]] || die "npm pack did not produce $TGZ"
    mkdir -p node_modules/@push.rocks/smartmongo
    tar -xzf "$TGZ" -C node_modules/@push.rocks/smartmongo --strip-components=1
    rm -f "$TGZ"
    cat > package.json <<JSON
{
  "name": "osmosis-beam-congodb",
  "private": true,
  "type": "module",
  "description": "CongoDB (from @push.rocks/smartmongo ${SMARTMONGO_VERSION}) for osmosis-beam tests",
  "dependencies": {
    "bson": "6.10.4",
    "mingo": "7.2.7",
    "@push.rocks/smartfs": "1.5.0",
    "@push.rocks/smartpath": "5.1.0",
    "@push.rocks/smartpromise": "4.2.3",
    "@push.rocks/smartrx": "3.0.10"
  }
}
JSON
    # npm install prunes packages not listed in package.json, so keep the
    # unpacked smartmongo aside while installing and put it back afterwards.
    mv node_modules/@push.rocks/smartmongo ./smartmongo.pkg
    npm install --no-audit --no-fund --ignore-scripts --loglevel=error >&2 \
        || die "npm install of CongoDB's pinned dependencies failed"
    mkdir -p node_modules/@push.rocks
    mv ./smartmongo.pkg node_modules/@push.rocks/smartmongo
    [[ -f "node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js" ]] \
        || die "unpacked package lacks dist_ts/congodb/index.js"
    node --input-type=module -e \
        "const m = await import('./node_modules/@push.rocks/smartmongo/dist_ts/congodb/index.js'); if (typeof m.CongoServer !== 'function') { console.error('CongoServer export missing'); process.exit(1); }" \
        || die "importing CongoServer from the installed package failed"
    echo "$MARKER_CONTENT" > .installed
)

rm -rf "$TARGET"
mv "$WORK" "$TARGET"
trap - EXIT
echo "congodb/install.sh: installed ($MARKER_CONTENT)" >&2
echo "$TARGET"
