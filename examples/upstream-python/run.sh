#!/bin/sh
# Starts the Python app (Debian's python3-websockets) and the gateway in front of it; Ctrl-C stops both.
# Run from the repository root after `npm install`:  sh examples/upstream-python/run.sh
set -eu
cd "$(dirname "$0")/../.."
/usr/bin/python3 examples/upstream-python/app.py --port 9001 &
APP=$!
trap 'kill $APP 2>/dev/null' EXIT INT TERM
node bin/portcullis.js serve --config examples/upstream-python/portcullis.yaml
