#!/usr/bin/env bash
# Rebuilds ../static/vendor/vendor.js, the one file of third-party browser code the preview page loads
# (three.js + its GLTFLoader, @msgpack/msgpack; versions pinned in package.json/package-lock.json).
# The bundle is committed so the installed package works offline; run this after changing a version.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npx esbuild entry.js --bundle --format=esm --minify --legal-comments=eof \
  --outfile=../static/vendor/vendor.js
