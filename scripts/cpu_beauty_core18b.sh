#!/usr/bin/env bash
# Issue #13, nineteenth session, beside core18.sh: is L = 6's loss on Beauty a search error? On the first 600
# validation users of seed 2020, diagnose --decode_check ranks every target by exact scoring of all item paths
# (the item head's term and τ included, as the trained model scores) and by trie-constrained beam search of
# width 20 (the trained setting, with the head's 20 candidates) and 100, for FlexCode (L = 3) and FlexCode-L6.
# JSON and log named decode_check-ROW-seed2020. One lane of one thread.
# Usage: bash scripts/cpu_beauty_core18b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
for row in FlexCode FlexCode-L6; do
  python -m recbole_flexcode.diagnose "$(checkpoint $row-seed2020)" --trust --threads=1 --decode_check=600 \
    --beam_sizes=20,100 "--out=$out/Amazon_Beauty/analysis/decode_check-$row-seed2020.json" \
    > "$logs/decode_check-$row-seed2020.log" 2>&1
done
