#!/usr/bin/env bash
# Issue #13, fourteenth session, beside scripts/cpu_beauty_core13.sh: the tail floor on the router. The
# thirteenth session's floor sweep (SASRec seed 2020's validation tail, 0.0245) was run on the 1 + 2 split
# only; this runs it on the router with dropout 0.1 (Beauty's section: FlexCode-dropout01 on seeds
# 2020/2021, FlexCode on seed 2022 once core13 has trained it), with τ up to 30 since the router's
# validation tail at τ 3 is further below the floor (0.0198 / 0.0201). ~15 min per checkpoint on one core.
# It ran before the fourteenth session relabelled results/cpu_rerun5's runs (python -m
# recbole_flexcode.benchmark.relabel): FlexCode-dropout01-seed2020/2021 are FlexCode-seed2020/2021 there now,
# so a rerun reads those names instead.
# Usage: bash scripts/cpu_beauty_core13b.sh [DATA_PATH] [OUT] (OUT default results/cpu_rerun5)
set -- "${1:-../shared/datasets}" "${2:-results/cpu_rerun5}"
. "$(dirname "$0")/cpu_beauty_common.sh"
floor FlexCode-seed2020 3,10,30
floor FlexCode-seed2021 3,10,30
until [ -f "$out/Amazon_Beauty/runs/FlexCode-seed2022.json" ]; do sleep 30; done
floor FlexCode-seed2022 3,10,30
