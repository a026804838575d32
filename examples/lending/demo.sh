#!/usr/bin/env bash
# The lending system end to end, as `make demo-lending` runs it: build (every imbalance option in
# one trade-off table, addr_state pseudonymised), serve the champion, replay the test loans with
# their outcomes as feedback, monitor, and check that the log holds every replayed prediction.
#   usage: examples/lending/demo.sh [path/to/mlsd]
set -euo pipefail
. "$(dirname "$0")/../demo_lib.sh"
MLSD=${1:-.venv/bin/mlsd}
PY=$(dirname "$MLSD")/python
DESIGN=examples/lending/design.yaml
WORKSPACE=examples/lending/.mlsd/lending-defaults
# data.privacy pseudonymises with this key; a real deployment keeps it in a secret store, and
# the same key must serve what it built (mlsd serve refuses another)
KEY_FILE=examples/lending/.mlsd/demo-pseudonym-key
mkdir -p "$(dirname "$KEY_FILE")"
[ -s "$KEY_FILE" ] || "$PY" -c 'import secrets; print(secrets.token_hex(32))' > "$KEY_FILE"
export MLSD_PSEUDONYM_KEY=${MLSD_PSEUDONYM_KEY:-$(cat "$KEY_FILE")}
PORT=${MLSD_DEMO_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL=http://127.0.0.1:$PORT

echo "== 1/5 build: the imbalance options side by side ======================================="
"$MLSD" build "$DESIGN"

echo "== 2/5 serve the champion on $URL (background) ==========================================="
fresh_log "$WORKSPACE"
serve_until_ready "$PORT" "$URL"

echo "== 3/5 replay the test loans with each loan's outcome as feedback ======================="
"$MLSD" replay "$DESIGN" --split test --url "$URL" --concurrency 16 --feedback

echo "== 4/5 stop the server (SIGTERM: it drains the log before exiting) ======================"
kill -TERM $SERVER; wait $SERVER || true; trap - EXIT
"$MLSD" log "$DESIGN"

echo "== 5/5 monitor the logged loans against the training loans ==============================="
monitor_reporting_alerts
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
