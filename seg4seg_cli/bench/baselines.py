"""The rows every discovery figure of `seg4seg bench` is shown beside.

- worst-k: the k cases with the lowest metric as one subgroup, k the planted subgroup's size.
  A scenario that this finds is solved by error ranking and proves nothing about discovery.
- identifiability: the cross-validated AUC of a supervised classifier of membership (the truth)
  on the same representation the default method uses (embedding and label-free columns). It says
  whether a miss is the representation's fault (AUC near 0.5) or the method's (AUC near 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from seg4seg_cli.discover import candidate_features
from seg4seg_cli.slicers.coherent import CoherentSlicer

N_FOLDS = 5


def worst_k(cases: pd.DataFrame, values: np.ndarray, higher_is_better: bool, k: int) -> list[dict]:
    """One subgroup (as in subgroups.json) of the `k` worst cases, worst first."""
    order = np.lexsort((cases["case_id"].to_numpy(), values if higher_is_better else -values))
    chosen = order[:k]
    rest = np.ones(len(values), bool)
    rest[chosen] = False
    sign = 1.0 if higher_is_better else -1.0
    gap = float(sign * (values[rest].mean() - values[chosen].mean())) if rest.any() else 0.0
    return [
        {
            "rank": 1,
            "id": "worst-k",
            "case_ids": [cases["case_id"].iloc[i] for i in chosen],
            "gap": gap,
            "p_adjusted": None,  # no honest test: chosen by the very metric it would test
        }
    ]


def identifiability(
    cases: pd.DataFrame, embeddings: np.ndarray | None, members: np.ndarray, seed: int
) -> float | None:
    """Cross-validated AUC of logistic regression for membership on the representation."""
    members = np.asarray(members, dtype=bool)
    if members.sum() < N_FOLDS or (~members).sum() < N_FOLDS:
        return None
    features = candidate_features(cases)
    representer = CoherentSlicer(random_state=seed)
    x = representer.fit_representation(embeddings, features, len(cases))
    scores = np.zeros(len(cases))
    splitter = StratifiedKFold(N_FOLDS, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, members):
        model = LogisticRegression(C=1.0, max_iter=2000).fit(x[train], members[train])
        scores[test] = model.decision_function(x[test])
    return float(roc_auc_score(members, scores))
