#!/usr/bin/env bash
# The flights system end to end, as `make demo` runs it: build the champion and a challenger,
# serve them with the design's canary, replay the test months with feedback (the canary advances
# or rolls back on it), show the rollout's state, monitor, and check that the log holds every
# prediction the replay sent.
#   usage: examples/flights/demo.sh [path/to/mlsd]
set -euo pipefail
. "$(dirname "$0")/../demo_lib.sh"
MLSD=${1:-.venv/bin/mlsd}
PY=$(dirname "$MLSD")/python
DESIGN=examples/flights/design.yaml
CHALLENGER=examples/flights/challenger.yaml
# the admin API (/v1/admin/*) answers only with this bearer token set in the server's environment
export MLSD_ADMIN_TOKEN=${MLSD_ADMIN_TOKEN:-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')}
PORT=${MLSD_DEMO_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL=http://127.0.0.1:$PORT

echo "== 1/7 build the champion ============================================================="
"$MLSD" build "$DESIGN"

echo "== 2/7 build the challenger (another candidate; the champion and its reference stay) ==="
"$MLSD" build "$CHALLENGER" --alias challenger
"$MLSD" models "$DESIGN"

echo "== 3/7 serve champion + challenger with the canary on $URL (background) ==============="
WORKSPACE=examples/flights/.mlsd/flight-delay
fresh_log "$WORKSPACE"
serve_until_ready "$PORT" "$URL"

echo "== 4/7 replay Nov-Dec 2013 in time order, with each flight's true outcome as feedback ==="
"$MLSD" replay "$DESIGN" --split test --url "$URL" --concurrency 16 --feedback | tee /tmp/mlsd-demo-replay.txt

echo "== 5/7 the rollout's state: the canary step, each variant's weight and requests ========"
curl -fsS -H "Authorization: Bearer $MLSD_ADMIN_TOKEN" "$URL/v1/admin/state" | "$PY" -m json.tool

echo "== 6/7 stop the server (SIGTERM: it drains the log before exiting) ======================"
kill -TERM $SERVER; wait $SERVER || true; trap - EXIT
"$MLSD" log "$DESIGN"

echo "== 7/7 monitor the logged weeks: per variant, the canary timeline, against the training months"
monitor_reporting_alerts "the test months do not look like the training months"
"$PY" - <<PYEOF
from mlsd.system import System
rows, labels = System("$DESIGN").replay_rows("test")
log = System("$DESIGN").prediction_log()
n, f = log.count_predictions(), log.count_feedback()
print(f"log check: replay sent {len(rows):,} rows; the log holds {n:,} predictions, {f:,} with feedback")
if not n == f == len(rows):
    raise SystemExit("the log does not hold exactly one prediction and one feedback per replayed row")
PYEOF
ls -1 "$WORKSPACE"/reports/
