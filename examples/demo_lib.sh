# Steps the example demos share (sourced by examples/*/demo.sh, which set MLSD, PY and DESIGN).

# A fresh prediction log, so that the counts a demo prints are its own replay's: an earlier
# demo's log (with its WAL files) is moved aside into the workspace's archive, never deleted.
#   fresh_log WORKSPACE
fresh_log() {
  local workspace=$1 archive
  if [ -f "$workspace/predictions.db" ]; then
    archive="$workspace/archive/$(date -u +%Y%m%dT%H%M%SZ)"
    mkdir -p "$archive"
    mv "$workspace"/predictions.db* "$archive"/
    echo "moved the previous demo's prediction log to $archive"
  fi
}

# `mlsd serve DESIGN` in the background on PORT, stopped when the demo exits; returns once
# /readyz answers 200 (at most 120 s).
#   serve_until_ready PORT URL
serve_until_ready() {
  local port=$1 url=$2
  "$MLSD" serve "$DESIGN" --port "$port" &
  SERVER=$!
  trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
  "$PY" - "$url" <<'PYEOF'
import sys, time, httpx
url, deadline = sys.argv[1], time.monotonic() + 120
while True:
    try:
        if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.monotonic() > deadline:
        raise SystemExit("the server did not become ready within 120 s")
    time.sleep(0.5)
print("server ready")
PYEOF
}

# `mlsd monitor DESIGN`, where exit 1 (alerts fired) is a finding the demo reports, not a failure.
#   monitor_reporting_alerts [what the alerts mean]
monitor_reporting_alerts() {
  local status=0
  "$MLSD" monitor "$DESIGN" || status=$?
  if [ "$status" -eq 1 ]; then
    echo "monitor: alerts fired (exit 1)${1:+: $1}"
  elif [ "$status" -ne 0 ]; then
    exit "$status"
  fi
}
