"""Published numbers, quoted (never measured here), shown beside our tables.

Only Amazon_Beauty has them (SPEC §4).  Every entry names its source; the benchmark tables
print them in a separate block marked "quoted from the paper / other reports, not measured
here", so they can never be mistaken for results of the runs in the same file.  The paper's
table order is R@5 / N@5 / R@10 / N@10; entries are keyed by metric name so no order is implied.
"""

from __future__ import annotations

FLEXCODE_PAPER = "FlexCode paper (arXiv 2511.20673), Table 1"
CORNAC_TIGER = "cornac 3.0.1, TIGER example README"
CORNAC_RPG = "cornac RPG port"


def _entry(model, r5, n5, r10, n10, source, note=""):
    return {
        "model": model,
        "recall@5": r5,
        "ndcg@5": n5,
        "recall@10": r10,
        "ndcg@10": n10,
        "source": source,
        "note": note,
    }


#: dataset name -> list of quoted results.
PUBLISHED: dict[str, list[dict]] = {
    "Amazon_Beauty": [
        _entry("SASRec", 0.0387, 0.0249, 0.0605, 0.0318, FLEXCODE_PAPER, "as reported in the paper"),
        _entry("TIGER", 0.0454, 0.0321, 0.0648, 0.0384, FLEXCODE_PAPER),
        _entry("URL", 0.0553, 0.0410, 0.0736, 0.0471, FLEXCODE_PAPER, "best baseline of the paper"),
        _entry("FlexCode-Fix", 0.0531, 0.0394, 0.0707, 0.0452, FLEXCODE_PAPER),
        _entry("FlexCode", 0.0578, 0.0415, 0.0769, 0.0483, FLEXCODE_PAPER),
        _entry("SASRec, tuned (BCE, 128-d)", 0.0508, 0.0348, 0.0740, 0.0423, CORNAC_TIGER),
        _entry("TIGER re-implementation", 0.0419, 0.0270, 0.0634, 0.0338, CORNAC_TIGER),
        _entry("RPG", 0.0550, 0.0381, 0.0809, 0.0464, CORNAC_RPG),
        _entry(
            "RecBole SASRec (same split)", 0.0543, 0.0315, 0.0821, 0.0405,
            "independent report cited in the project spec (SPEC §4)",
            "RecBole 1.2.1 SASRec on the same leave-last-out split",
        ),
    ],
}


def published_for(dataset: str) -> list[dict]:
    """Quoted results for ``dataset`` (empty list when none are known)."""
    return [dict(e) for e in PUBLISHED.get(dataset, [])]
