#!/bin/sh
# Starts the gateway (examples/upstream-node/portcullis.yaml) and the Node app behind it; Ctrl-C stops both.
# Run from the repository root after `npm install`:  sh examples/upstream-node/run.sh
set -eu
cd "$(dirname "$0")/../.."
node bin/portcullis.js serve --config examples/upstream-node/portcullis.yaml &
GATEWAY=$!
trap 'kill $GATEWAY 2>/dev/null' EXIT INT TERM
# The app trusts the gateway's development CA, which the gateway creates on its first start.
while [ ! -f .portcullis/ca.crt ]; do sleep 0.2; done
NODE_EXTRA_CA_CERTS=.portcullis/ca.crt node examples/upstream-node/app.mjs
