#!/usr/bin/env bash
# Reproduces serve/static/vendor/: the JavaScript libraries the web pages load from this
# service (never from a CDN at run time; the pages' CSP allows scripts from 'self' only).
#   bash scripts/vendor-js.sh          # fetch with npm, check, copy
#   bash scripts/vendor-js.sh --check  # only check the committed files against the pins
# Each library: an npm package at a pinned version, the registry's sha512 of its tarball
# (npm view NAME@VERSION dist.integrity), and the sha256 of each file copied from it.
# Chart.js (MIT, https://www.chartjs.org): the dashboard and canteen pages' charts.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=serve/static/vendor
CHARTJS_VERSION=4.5.1
CHARTJS_INTEGRITY="sha512-GIjfiT9dbmHRiYi6Nl2yFCq7kkwdkp1W/lp2J99rX0yo9tgJGn3lKQATztIjb5tVtevcBtIdICNWqlq5+E8/Pw=="
CHARTJS_JS_SHA256=48444a82d4edcb5bec0f1965faacdde18d9c17db3063d042abada2f705c9f54a
CHARTJS_LICENSE_SHA256=41a84aa2caba645f966a18d9c2056b73e6d3a81d80bc0046bc0011a2634d4cce

check() {
  (cd "$DEST" && printf '%s  %s\n%s  %s\n' \
     "$CHARTJS_JS_SHA256" chart.umd.min.js "$CHARTJS_LICENSE_SHA256" chart.js-LICENSE.md \
     | sha256sum --check --quiet)
}

if [ "${1:-}" = "--check" ]; then
  check && echo "vendored files match their pins"
  exit
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "chart.js@$CHARTJS_VERSION" >/dev/null)
tarball="$work/chart.js-$CHARTJS_VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$CHARTJS_INTEGRITY" ]; then
  echo "chart.js@$CHARTJS_VERSION tarball integrity mismatch: $got" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
mkdir -p "$DEST"
cp "$work/package/dist/chart.umd.min.js" "$DEST/chart.umd.min.js"
cp "$work/package/LICENSE.md" "$DEST/chart.js-LICENSE.md"
check
echo "vendored chart.js $CHARTJS_VERSION into $DEST"
