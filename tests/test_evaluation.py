"""evaluation.target_strata / at_mix on hand-built ranks: which stratum each target lands in, and the
reweighting that separates a change of the target mix from a change within the strata."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recbole_flexcode.data.popularity import DAY
from recbole_flexcode.evaluation import (
    COUNT_EDGES, CROSS_COUNT_EDGES, CROSS_GAP_EDGES_DAYS, GAP_EDGES_DAYS, at_mix, cross_strata, metrics_from_ranks,
    target_strata,
)

# items 1..6 with training counts 0, 1, 7, 12, 30, 80 (item 0 is RecBole's padding id)
COUNTS = np.array([0, 0, 1, 7, 12, 30, 80])
# the latest training time of each item (NaN: never a training target)
LAST = np.array([np.nan, np.nan, 10 * DAY, 0.0, 100 * DAY, 200 * DAY, 1000 * DAY])


def _names(rows):
    return [r["stratum"] for r in rows]


def test_targets_land_in_their_count_and_gap_strata():
    targets = np.array([1, 2, 3, 4, 5, 6, 6])
    ranks = np.array([1, 2, 3, 20, 1, 11, 5])
    # days after the item's last training time: -, 5, 40, 300, 400, -100 (counts as 0) and 10
    times = np.array([0.0, 15 * DAY, 40 * DAY, 400 * DAY, 600 * DAY, 900 * DAY, 1010 * DAY])
    out = target_strata(ranks, targets, COUNTS, times, LAST, ks=(10,))

    by_count = out["by_train_count"]
    assert _names(by_count) == ["0", "1-4", "5-9", "10-19", "20-49", "50+"]
    assert len(by_count) == len(COUNT_EDGES)
    assert [r["users"] for r in by_count] == [1, 1, 1, 1, 1, 2]
    assert by_count[5]["recall@10"] == 0.5  # item 6 at ranks 11 and 5
    assert by_count[5]["ndcg@10"] == pytest.approx(0.5 / math.log2(6))

    by_gap = out["by_days_since_last_train"]
    assert _names(by_gap) == ["never", "0-30 d", "30-180 d", "180-365 d", "365+ d"]
    assert len(by_gap) == len(GAP_EDGES_DAYS) + 1
    # item 1 never a target; 5 d, 0 d (before its last time) and 10 d; 40 d; 300 d; 400 d
    assert [r["users"] for r in by_gap] == [1, 3, 1, 1, 1]
    assert by_gap[0]["recall@10"] == 1.0 and by_gap[1]["recall@10"] == pytest.approx(2 / 3)

    for rows in out.values():
        assert sum(r["users"] for r in rows) == len(targets)
        assert sum(r["share"] for r in rows) == pytest.approx(1.0)
        # the strata average back to the whole, weighted by their users
        whole = metrics_from_ranks(ranks, (10,))
        for metric in ("recall@10", "ndcg@10"):
            assert sum(r["share"] * r[metric] for r in rows if r["users"]) == pytest.approx(whole[metric])


def test_empty_stratum_and_no_time_field():
    out = target_strata(np.array([1, 30]), np.array([6, 6]), COUNTS)
    assert set(out) == {"by_train_count"}  # no times: no gap strata
    assert [r["users"] for r in out["by_train_count"]] == [0, 0, 0, 0, 0, 2]
    assert "ndcg@10" not in out["by_train_count"][0] and out["by_train_count"][0]["share"] == 0.0


def test_at_mix_reweights_to_the_other_splits_shares():
    # test: half its users on a hard stratum; validation: a quarter there
    test = target_strata(np.array([1, 1, 50, 50]), np.array([6, 6, 2, 2]), COUNTS)["by_train_count"]
    valid = target_strata(np.array([1, 1, 1, 50]), np.array([6, 6, 6, 2]), COUNTS)["by_train_count"]
    assert at_mix(test, test, "recall@10") == pytest.approx(0.5)  # its own mix: its own metric
    # validation's mix of the same per-stratum results: 3/4 of the users on the stratum test gets right
    assert at_mix(test, valid, "recall@10") == pytest.approx(0.75)
    # a stratum the other split has but this one lacks leaves the reweighting undefined
    lacks = target_strata(np.array([1]), np.array([6]), COUNTS)["by_train_count"]
    assert math.isnan(at_mix(lacks, valid, "recall@10"))


def test_cross_strata_tell_rare_and_stale_targets_apart():
    """The count x days strata: each target in the cell of its coarse training count and its gap."""
    targets = np.array([1, 2, 3, 4, 5, 6, 6])
    ranks = np.array([1, 2, 3, 20, 1, 11, 5])
    times = np.array([0.0, 15 * DAY, 40 * DAY, 400 * DAY, 600 * DAY, 900 * DAY, 1010 * DAY])
    cross = target_strata(ranks, targets, COUNTS, times, LAST, ks=(10,))["by_count_and_days"]
    assert _names(cross)[:3] == ["0 · never", "0 · 0-30 d", "0 · 30+ d"]
    assert len(cross) == len(CROSS_COUNT_EDGES) * (len(CROSS_GAP_EDGES_DAYS) + 1)
    users = {r["stratum"]: r["users"] for r in cross if r["users"]}
    # item 1 (count 0, never a target); 2 (count 1, 5 d); 3 (count 7, 40 d); 4, 5 (12 and 30, 300 and 400 d);
    # 6 twice (80, 0 and 10 d)
    assert users == {"0 · never": 1, "1-9 · 0-30 d": 1, "1-9 · 30+ d": 1, "10-49 · 30+ d": 2, "50+ · 0-30 d": 2}
    stale = next(r for r in cross if r["stratum"] == "10-49 · 30+ d")
    assert stale["recall@10"] == 0.5  # ranks 20 and 1


def test_cross_strata_of_counts_and_gaps():
    labels, names = cross_strata(np.array([0, 3, 9, 10, 49, 50, 500]),
                                 np.array([np.nan, 29.9, 30.0, -5.0, 400.0, np.nan, 0.0]))
    assert [names[i] for i in labels] == ["0 · never", "1-9 · 0-30 d", "1-9 · 30+ d", "10-49 · 0-30 d",
                                          "10-49 · 30+ d", "50+ · never", "50+ · 0-30 d"]
