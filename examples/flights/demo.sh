#!/usr/bin/env bash
# The flights system end to end, as `make demo` runs it: build, serve, replay the test months
# with feedback, monitor, and check that the log holds every prediction the replay sent.
#   usage: examples/flights/demo.sh [path/to/mlsd]
set -euo pipefail
MLSD=${1:-.venv/bin/mlsd}
PY=$(dirname "$MLSD")/python
DESIGN=examples/flights/design.yaml
PORT=${MLSD_DEMO_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL=http://127.0.0.1:$PORT

echo "== 1/5 build =========================================================================="
"$MLSD" build "$DESIGN"

echo "== 2/5 serve the champion on $URL (background) ======================================="
# A fresh log so that the counts below are this replay's: an earlier demo's log is moved aside
# (with its WAL files), never deleted.
WORKSPACE=examples/flights/.mlsd/flight-delay
if [ -f "$WORKSPACE/predictions.db" ]; then
  ARCHIVE="$WORKSPACE/archive/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$ARCHIVE"
  mv "$WORKSPACE"/predictions.db* "$ARCHIVE"/
  echo "moved the previous demo's prediction log to $ARCHIVE"
fi
"$MLSD" serve "$DESIGN" --port "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
"$PY" - <<PYEOF
import time, httpx
deadline = time.monotonic() + 120
while True:
    try:
        if httpx.get("$URL/readyz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit("the server did not become ready within 120 s")
    time.sleep(0.5)
print("server ready")
PYEOF

echo "== 3/5 replay Nov-Dec 2013 in time order, with each flight's true outcome as feedback ==="
"$MLSD" replay "$DESIGN" --split test --url "$URL" --concurrency 16 --feedback | tee /tmp/mlsd-demo-replay.txt

echo "== 4/5 stop the server (SIGTERM: it drains the log before exiting) ======================"
kill -TERM $SERVER; wait $SERVER || true; trap - EXIT
"$MLSD" log "$DESIGN"

echo "== 5/5 monitor the logged weeks against the training months ============================"
set +e
"$MLSD" monitor "$DESIGN"
STATUS=$?
set -e
if [ $STATUS -eq 1 ]; then
  echo "monitor: alerts fired (exit 1): the test months do not look like the training months"
elif [ $STATUS -ne 0 ]; then
  exit $STATUS
fi
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
