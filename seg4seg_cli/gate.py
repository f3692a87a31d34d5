"""The CI gate: does a model pass, given subgroups.json and the user's rules?

Rules (each optional; with none the audit only reports and the verdict is "not gated"):
- a subgroup fails the gate when its `p_adjusted < alpha`, its `gap >= fail_gap` and its size is at
  least the minimum subgroup size;
- the overall metric fails it when its mean is worse than `fail_below` (below it for
  higher-is-better metrics such as Dice, above it for lower-is-better ones such as HD95).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# One verdict vocabulary for audit, report and compare, in every format: a run given no rule is
# "not gated", never a pass.
PASS, FAIL, NOT_GATED = "pass", "fail", "not gated"
HEADLINES = {PASS: "PASS", FAIL: "FAIL", NOT_GATED: "NOT GATED"}
NOT_GATED_REASON = "no gate rules given"


def verdict_status(verdict: dict | None) -> str:
    """`pass`, `fail` or `not gated` of a verdict dict (as in run.json; None is not gated)."""
    if verdict is None:
        return NOT_GATED
    if verdict.get("status") in HEADLINES:
        return verdict["status"]
    if (verdict.get("rules") or {}).get("applied") is False:
        return NOT_GATED
    return PASS if verdict.get("passed") else FAIL


@dataclass(frozen=True)
class GateRules:
    fail_gap: float | None = None
    fail_below: float | None = None
    alpha: float = 0.05


@dataclass
class Verdict:
    """The outcome: `passed`, one reason per rule tripped, and the failing subgroups' ids."""

    passed: bool
    reasons: list[str] = field(default_factory=list)
    failing_subgroups: list[str] = field(default_factory=list)
    rules: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        if not self.passed:
            return FAIL
        return PASS if self.rules.get("applied", True) else NOT_GATED

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "passed": self.passed,
            "reasons": self.reasons,
            "failing_subgroups": self.failing_subgroups,
            "rules": self.rules,
        }

    @property
    def line(self) -> str:
        return verdict_line(self.as_dict())


def verdict_line(verdict: dict | None, hint: str = "--fail-gap or --fail-below") -> str:
    """The one-line verdict of every format: `PASS: ...`, `FAIL: ...` or `NOT GATED: ...`."""
    status = verdict_status(verdict)
    if status == FAIL:
        return "FAIL: " + "; ".join(verdict["reasons"])
    if status == NOT_GATED:
        return f"NOT GATED: {NOT_GATED_REASON} (add {hint} to use this run as a release gate)"
    return "PASS: no gate rule tripped"


def subgroup_fails(group: dict, rules: GateRules, min_size: int) -> bool:
    if rules.fail_gap is None:
        return False
    p_adjusted = group.get("p_adjusted")
    gap = group.get("gap")
    return (
        p_adjusted is not None
        and gap is not None
        and p_adjusted < rules.alpha
        and gap >= rules.fail_gap
        and group["size"] >= min_size
    )


def evaluate_gate(payload: dict, rules: GateRules) -> Verdict:
    """Apply `rules` to a subgroups.json payload."""
    metric = payload["metric"]
    min_size = payload.get("min_size", 0)
    verdict = Verdict(
        passed=True,
        rules={
            "fail_gap": rules.fail_gap,
            "fail_below": rules.fail_below,
            "alpha": rules.alpha,
            "min_size": min_size,
            "applied": rules.fail_gap is not None or rules.fail_below is not None,
        },
    )
    for group in payload["subgroups"]:
        if subgroup_fails(group, rules, min_size):
            verdict.failing_subgroups.append(group["id"])
            verdict.reasons.append(
                f"subgroup rank {group['rank']} ({group['id']}, {group['size']} cases) is worse by "
                f"{group['gap']:.3f} {metric} (>= --fail-gap {rules.fail_gap}) with adjusted p = "
                f"{group['p_adjusted']:.2g} (< --alpha {rules.alpha})"
            )
    mean = payload["overall"]["mean"]
    if rules.fail_below is not None and mean is not None:
        higher = payload.get("higher_is_better", True)
        if (mean < rules.fail_below) if higher else (mean > rules.fail_below):
            side = "below" if higher else "above"
            verdict.reasons.append(
                f"overall mean {metric} {mean:.3f} is {side} --fail-below {rules.fail_below}"
            )
    verdict.passed = not verdict.reasons
    return verdict
