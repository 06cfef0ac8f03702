#!/bin/sh
# The "browser" of the conformance tests' OAuth scenarios (tests/conformance/auth_client.py sets
# BROWSER to this script): Revka runs `$BROWSER <authorization URL>`; the suite's fake
# authorization server answers /authorize at once with a redirect to Revka's loopback callback
# (code and state in the query), so following redirects plays the person who signs in.
# What it did goes to stderr (the suite keeps the client's stderr); exit status is curl's.
set -eu
if [ "$#" -ne 1 ]; then
    echo "browser.sh: usage: browser.sh URL" >&2
    exit 2
fi
echo "browser.sh: opening $1" >&2
curl --silent --show-error --location --max-redirs 10 --max-time 20 \
    --output /dev/null \
    --write-out 'browser.sh: landed on %{url_effective} (HTTP %{http_code})\n' \
    -- "$1" >&2
