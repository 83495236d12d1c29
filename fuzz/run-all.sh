#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds each (default 600), one after
# another, and keeps their logs in fuzz/logs/. CI runs each for a few
# seconds (.ci/run); a real campaign runs this. Inputs start from the
# committed seeds/ and grow in corpus/ (not committed: tens of MB); an
# input that ever crashes a target goes into seeds/ with the fix.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
mkdir -p logs
for t in $(cargo fuzz list); do
  mkdir -p "corpus/$t" "seeds/$t"
  echo "== $t for ${secs}s"
  cargo fuzz run -O "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 -print_final_stats=1 >"logs/$t.log" 2>&1 \
    || { echo "!! $t failed; see fuzz/logs/$t.log"; tail -30 "logs/$t.log"; exit 1; }
  grep -E "^(stat::number_of_executed_units|stat::new_units_added)" "logs/$t.log" || true
done
