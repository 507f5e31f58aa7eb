#!/usr/bin/env bash
# Concurrency stress benchmark (not a test): 32 writers on one study database for a fixed
# time (16 `ualign simulate` loops and 16 participant screens in pseudo-terminals
# answering as fast as the screen allows) with `stats` and `export` reading beside them;
# then, in the same run, the SQLite peer (benches/peers/stress_peer.py): 32 bare writers
# doing ualign's answer transaction through SQLite's own busy handler, with BEGIN IMMEDIATE
# as ualign does now and with BEGIN DEFERRED as it did before.
#
#   benches/stress.sh          # 60 s each
#   SECS=20 benches/stress.sh
# Figures go to target/stress/*.json; docs/RELIABILITY.md records a run.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-60}
SIMULATORS=${SIMULATORS:-16}
SCREENS=${SCREENS:-16}
mkdir -p target/stress
echo "== ualign: $SIMULATORS simulate + $SCREENS screens + stats/export readers, ${SECS}s"
cargo bench --bench stress -- --secs "$SECS" --simulators "$SIMULATORS" --screens "$SCREENS" \
    --json target/stress/ualign.json
WRITERS=$((SIMULATORS + SCREENS))
echo "== peer: $WRITERS bare SQLite writers, BEGIN IMMEDIATE, ${SECS}s"
python3 benches/peers/stress_peer.py --writers "$WRITERS" --secs "$SECS" --mode immediate | tee target/stress/peer-immediate.json
echo "== peer: $WRITERS bare SQLite writers, BEGIN DEFERRED (ualign before), ${SECS}s"
python3 benches/peers/stress_peer.py --writers "$WRITERS" --secs "$SECS" --mode deferred | tee target/stress/peer-deferred.json
