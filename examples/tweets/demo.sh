#!/usr/bin/env bash
# The tweets system end to end, as `make demo-tweets` runs it: build (TF-IDF and MiniLM candidates,
# the embeddings cached in the workspace; the document also reports the 14 labelling functions'
# coverage, conflicts and accuracy, gold vs label model vs majority vote, and the winner trained on
# each, see docs/weak-supervision.md), serve the champion, replay the test tweets with their
# true device as feedback, monitor (text length, out-of-vocabulary rate, embedding drift), and
# check that the log holds every prediction the replay sent.
#   usage: examples/tweets/demo.sh [path/to/mlsd]
set -euo pipefail
. "$(dirname "$0")/../demo_lib.sh"
MLSD=${1:-.venv/bin/mlsd}
PY=$(dirname "$MLSD")/python
DESIGN=examples/tweets/design.yaml
export HF_HUB_OFFLINE=1  # MiniLM loads from its package, never from the network
PORT=${MLSD_DEMO_PORT:-$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL=http://127.0.0.1:$PORT

echo "== 1/5 build: logistic regression on TF-IDF and on MiniLM embeddings, compared with CIs;"
echo "   the labelling functions, and the winner trained on each label source, judged on gold ======="
"$MLSD" build "$DESIGN"

echo "== 2/5 serve the champion on $URL (background): a request carries the raw tweet ============"
WORKSPACE=examples/tweets/.mlsd/tweets
fresh_log "$WORKSPACE"
serve_until_ready "$PORT" "$URL"
curl -fsS -H 'content-type: application/json' "$URL/v1/predict" \
  -d '{"inputs": {"text": "The failing New York Times is FAKE NEWS. Sad!"}}'
echo

echo "== 3/5 replay the test tweets in time order, with each tweet's true device as feedback ====="
"$MLSD" replay "$DESIGN" --split test --url "$URL" --concurrency 8 --feedback

echo "== 4/5 stop the server (SIGTERM: it drains the log before exiting) ========================="
kill -TERM $SERVER; wait $SERVER || true; trap - EXIT

echo "== 5/5 monitor: feature drift, and the text watches (length, OOV rate, MMD of embeddings) ==="
monitor_reporting_alerts
"$PY" - <<PYEOF
import json
from mlsd.system import System
system = System("$DESIGN")
rows, _ = system.replay_rows("test")
log = system.prediction_log()
n, f = log.count_predictions(), log.count_feedback()
print(f"log check: replay sent {len(rows):,} rows (+1 by curl); the log holds {n:,} predictions, {f:,} with feedback")
if not (n == len(rows) + 1 and f == len(rows)):
    raise SystemExit("the log does not hold one prediction per request and one feedback per replayed row")
latest = max((system.workspace / "reports").glob("monitor-*.json"), key=lambda p: p.stat().st_mtime)
report = json.loads(latest.read_text())
for t in report["overall"]["text"]:
    print(f"text watch {t['column']}: {t['n_window']} texts, median length {t['length_window_median']:.0f} "
          f"(train {t['length_reference_median']:.0f}), OOV {t['oov_window']:.1%} (expected "
          f"{t['oov_expected']:.1%}), MMD p {t['mmd_p_value']:.3f}, effect {t['mmd_effect']:.3f}")
PYEOF
ls -1 "$WORKSPACE"/reports/
