"""The CI gate: does a model pass, given subgroups.json and the user's rules?

Rules (each optional; with none the audit only reports):
- a subgroup fails the gate when its `p_adjusted < alpha`, its `gap >= fail_gap` and its size is at
  least the minimum subgroup size;
- the overall metric fails it when its mean is worse than `fail_below` (below it for
  higher-is-better metrics such as Dice, above it for lower-is-better ones such as HD95).
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    def as_dict(self) -> dict:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "failing_subgroups": self.failing_subgroups,
            "rules": self.rules,
        }

    @property
    def line(self) -> str:
        if self.passed:
            applied = "no gate rule tripped" if self.rules.get("applied") else "no gate rules given"
            return f"PASS: {applied}"
        return "FAIL: " + "; ".join(self.reasons)


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
