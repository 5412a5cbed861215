#!/usr/bin/env bash
# Issue #13, sixteenth session, beside scripts/cpu_beauty_core15.sh: the decoupled router (router_mode: decoupled,
# docs/design.md "router") on the last-state core, seed 2020, once core15's lane 1 (semantic-only) is done. The
# expected-loss router gives every Beauty item three CF tokens and the fixed 1 + 2 split leads it on validation
# on every seed; the decoupled router kept a router and landed near that split on the tied core, so it is the
# candidate that could let Beauty's section keep a router and the split's accuracy.
# Usage: bash scripts/cpu_beauty_core15b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
until [ -f "$out/Amazon_Beauty/runs/FlexCode-semantic_only-seed2022.json" ]; do sleep 30; done
bench --seeds=2020 --models=FlexCode-decoupled > "$logs/FlexCode-decoupled-seed2020.log" 2>&1
