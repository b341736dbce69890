"""The suspect score: which items look right for the wrong reason (docs/audits.md, "Suspects").

score = w · (off_object + border + atypical), each term in [0, 1], per output:
- off_object = 1 - energy_in_box when the relevance peak misses the object (pointing_hit is
               false), else 0; 0 without a box or mask;
- border     = how far border_energy exceeds this method's median over the job, as a share of
               what is left: max(0, (border_energy - m) / (1 - m));
- atypical   = how much worse its SpRAy cluster does than the rest of its predicted class:
               max(0, mean(v) over the cluster - mean(v) over the rest of the class), with
               v = off_object + border per member (0 when not clustered);
- w          = 1 for a correct (or unlabelled) prediction, 0.5 for a wrong one: a model that is
               right for the wrong reason is the case an audit exists to find.
An item's score is that of its highest-scoring output. An item is a suspect when its score
is at least `SUSPECT_AT`, the sum of the reason levels: a score that high has at least one term
at its reason level, so every suspect comes with a reason in words.
"""

from __future__ import annotations

import numpy as np

WRONG_WEIGHT = 0.5
# A term at least this large is spelled out among the suspect's reasons.
REASON_AT = {"off_object": 0.3, "border": 0.1, "atypical": 0.1}
# Terms all below their reason levels sum to less than this (0.5); a weight of at most 1 keeps
# that true of the score.
SUSPECT_AT = round(sum(REASON_AT.values()), 6)


def off_object(energy_in_box: np.ndarray, pointing_hit: np.ndarray) -> np.ndarray:
    """1 - energy_in_box where the peak missed the object, else 0 (NaN, i.e. None, gives 0)."""
    energy = np.asarray(energy_in_box, dtype=np.float64)
    missed = np.asarray(pointing_hit, dtype=np.float64) == 0
    return np.where(missed & ~np.isnan(energy), 1.0 - energy, 0.0)


def border_excess(border_energy: np.ndarray, typical: float) -> np.ndarray:
    """max(0, (border_energy - typical) / (1 - typical)); NaN gives 0."""
    border = np.asarray(border_energy, dtype=np.float64)
    excess = np.clip((border - typical) / max(1.0 - typical, 1e-12), 0.0, 1.0)
    return np.nan_to_num(excess, nan=0.0)


def cluster_atypicality(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per cluster: max(0, its members' mean `values` - the other clusters' members' mean)."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels)
    count = int(labels.max()) + 1 if labels.size else 0
    out = np.zeros(count)
    for c in range(count):
        inside = labels == c
        if inside.all() or not inside.any():
            continue
        out[c] = max(0.0, float(values[inside].mean() - values[~inside].mean()))
    return np.minimum(out, 1.0)


def suspect_scores(terms: dict[str, np.ndarray], correct: np.ndarray) -> np.ndarray:
    """w · (off_object + border + atypical); `correct` is 1, 0, or -1 where there is no label."""
    weight = np.where(np.asarray(correct) == 0, WRONG_WEIGHT, 1.0)
    return weight * (terms["off_object"] + terms["border"] + terms["atypical"])


def reasons(terms: dict[str, float], *, energy_in_box: float, border_energy: float,
            typical_border: float, cluster_size: int, cluster_share: float, class_name: str,
            correct: int) -> list[str]:
    """The plain-language reasons behind one suspect's score."""
    out = []
    if terms["off_object"] >= REASON_AT["off_object"]:
        out.append(f"the relevance peaks off the object, and {1 - energy_in_box:.0%} of it "
                   "lies outside the object")
    if terms["border"] >= REASON_AT["border"]:
        out.append(f"{border_energy:.0%} of the relevance lies in the outer band (this "
                   f"method's median is {typical_border:.0%})")
    if terms["atypical"] >= REASON_AT["atypical"]:
        out.append(f"its strategy cluster ({cluster_size} maps, {cluster_share:.0%} of class "
                   f"{class_name}) looks off the object more than the rest of the class")
    if correct == 0:
        out.append("the prediction is wrong (its score counts half)")
    return out
