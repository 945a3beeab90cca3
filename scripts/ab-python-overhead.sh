#!/usr/bin/env bash
# Python-layer overhead of two package trees, interleaved (A B A B ...), so that host-timing
# drift over the run hits both alike (docs/perf.md, Python layer: one A-then-B pair drifted more
# than the change it measured). Needs 2 GPUs, torch, and a built libepcomm.
#   [OLD_LIBRARY=path] scripts/ab-python-overhead.sh OLD_PYTHONPATH NEW_PYTHONPATH [ROUNDS] [OUTDIR]
# OLD_LIBRARY: the libepcomm.so the old package runs on, where the C structs changed between the two
# (default: the one the new package uses).
# Rounds alternate the order (old new, new old, ...). Prints every round and, per op and package, the
# median over rounds of the overhead and the median of the rounds' paired differences (us).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-3} out=${4:-${OUT:-/tmp/epcomm-ab-python}}
mkdir -p "$out"
new_lib=${EPCOMM_LIBRARY:-$PWD/build/release/src/libepcomm.so}
old_lib=${OLD_LIBRARY:-$new_lib}
for r in $(seq 1 "$rounds"); do
  order="old new"
  [ $((r % 2)) = 0 ] && order="new old"  # A B B A ...: a steady drift hits both sides alike
  for side in $order; do
    path=$old lib=$old_lib
    [ "$side" = new ] && path=$new lib=$new_lib
    EPCOMM_LIBRARY=$lib PYTHONPATH=$path timeout 120 python3 python/benchmarks/overhead.py --json "$out/$side-$r.json" \
      >"$out/$side-$r.txt" 2>&1
    echo "round $r $side: $(grep -v '^#' "$out/$side-$r.txt" | awk '{printf "%s %s; ", $1, $NF}')"
  done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
table = {}
for side in ("old", "new"):
    for r in range(1, rounds + 1):
        for row in json.load(open(f"{out}/{side}-{r}.json")):
            table.setdefault(row["op"], {}).setdefault(side, []).append(row["overhead_us"])
print(f"# median overhead over {rounds} interleaved rounds (us); new - old: median of the rounds' differences")
print(f"# {'op':22s} {'old':>8s} {'new':>8s} {'new - old':>10s}")
for op, sides in table.items():
    diff = statistics.median(n - o for o, n in zip(sides["old"], sides["new"]))
    print(f"  {op:22s} {statistics.median(sides['old']):8.1f} {statistics.median(sides['new']):8.1f} {diff:10.1f}")
PY
