#!/usr/bin/env bash
# Issue #13, seventeenth session, after scripts/cpu_beauty_core16.sh's lanes: where the router row's tail is lost
# against SASRec (item 7: the measurement that shows what limits a missed target). Seed 2020's test rows beside
# SASRec's, per popularity x recency cell, for the router and the decoupled router at the section's τ 5, and for
# the router's item head alone (τ 1000: every item's score is the head's). ~6 min, one lane, after core16.sh.
# Usage: bash scripts/cpu_beauty_core16b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
a=$out/Amazon_Beauty/analysis
# RUN TAU NAME LABEL: diagnose --by_target of RUN at τ TAU, then its rows beside SASRec seed 2020's (its column
# named LABEL); files named NAME
beside() {
  python -m recbole_flexcode.diagnose "$(checkpoint $1)" --trust --threads=1 --by_target --item_head_shrink=$2 \
    "--rows_out=$a/rows-$3.npz" "--out=$a/by_target-$3.json" > "$logs/by_target-$3.log" 2>&1
  python -m recbole_flexcode.analysis.paired "$a/rows-SASRec-seed2020.npz" "$a/rows-$3.npz" \
    --names=SASRec,$4 "--out=$a/paired-SASRec-$3.md" > /dev/null
}
# run names after the relabelling (expected-loss router: FlexCode-expected_loss; the decoupled router: FlexCode);
# the files keep the names they were first written under
beside FlexCode-expected_loss-seed2020 5 FlexCode-seed2020-tau5 expected_loss
beside FlexCode-expected_loss-seed2020 1000 FlexCode-seed2020-tau1000 expected_loss_head_alone
beside FlexCode-seed2020 5 FlexCode-decoupled-seed2020-tau5 decoupled
