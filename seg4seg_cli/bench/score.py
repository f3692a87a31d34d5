"""Scoring of discovered subgroups against a scenario's planted subgroup (dcbench's criterion).

A method *finds* the subgroup when the best of its top-3 reported subgroups has precision@10 of
at least 0.8: of that subgroup's 10 strongest members (the order of `case_ids`), 8 are planted.
Precision, recall and F1 are those of the whole best subgroup. On a null scenario (nothing
planted) a false alarm is any reported subgroup with `p_adjusted < 0.05` and `gap >= 0.05`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

TOP = 3
K = 10
FOUND_AT = 0.8
ALARM_P = 0.05
ALARM_GAP = 0.05


@dataclass
class Score:
    found: bool | None  # None on a null scenario
    p_at_10: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    best_rank: int | None  # rank of the best of the top-3 subgroups
    best_significant: bool | None  # its p_adjusted < 0.05
    false_alarms: int  # subgroups with p_adjusted < 0.05 and gap >= 0.05
    n_subgroups: int

    def as_dict(self) -> dict:
        return asdict(self)


def _alarming(subgroup: dict) -> bool:
    p, gap = subgroup.get("p_adjusted"), subgroup.get("gap")
    return p is not None and gap is not None and p < ALARM_P and gap >= ALARM_GAP


def precision_at(case_ids: list[str], truth: set[str], k: int = K) -> float:
    """Share of planted cases among the first `k` members (all of them when fewer)."""
    head = case_ids[:k]
    return sum(c in truth for c in head) / len(head) if head else 0.0


def score(subgroups: list[dict], truth: list[str] | None) -> Score:
    """Score one method's ranked `subgroups` (as in subgroups.json) against the planted `truth`.

    `truth` None or empty means a null scenario.
    """
    ranked = sorted(subgroups, key=lambda s: s["rank"])
    alarms = sum(_alarming(s) for s in ranked)
    if not truth:
        return Score(None, None, None, None, None, None, None, alarms, len(ranked))
    planted = set(truth)
    best, best_key = None, None
    for subgroup in ranked[:TOP]:
        members = subgroup["case_ids"]
        hits = sum(c in planted for c in members)
        precision = hits / len(members) if members else 0.0
        recall = hits / len(planted)
        f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
        # best P@10; ties go to the better F1, then the higher rank
        key = (precision_at(members, planted), f1, -subgroup["rank"])
        if best_key is None or key > best_key:
            best_key, best = key, (subgroup, precision, recall, f1)
    if best is None:
        return Score(False, 0.0, 0.0, 0.0, 0.0, None, None, alarms, 0)
    subgroup, precision, recall, f1 = best
    p_at_10 = best_key[0]
    return Score(
        found=p_at_10 >= FOUND_AT,
        p_at_10=p_at_10,
        precision=precision,
        recall=recall,
        f1=f1,
        best_rank=subgroup["rank"],
        best_significant=subgroup.get("p_adjusted") is not None
        and subgroup["p_adjusted"] < ALARM_P,
        false_alarms=alarms,
        n_subgroups=len(ranked),
    )
