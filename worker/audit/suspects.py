"""The suspect score: which items look right for the wrong reason (docs/audits.md, "Suspects").

score = w · (outside + border + atypical), each term in [0, 1]:
- outside  = 1 - energy_in_box: the share of relevance off the object (0 without a region);
- border   = the excess of border_energy over a uniform map's, as a share of what is left:
             max(0, (border_energy - b) / (1 - b)), b the band's share of the image;
- atypical = the atypicality of the item's SpRAy cluster (below; 0 when not clustered);
- w        = 1 for a correct (or unlabelled) prediction, 0.5 for a wrong one: a model that is
             right for the wrong reason is the case an audit exists to find.
A cluster's atypicality is (1 - share / largest share in its class) · (1 - cosine between its
mean map and the mean map of the rest of the class): small, and looking elsewhere.
"""

from __future__ import annotations

import numpy as np

from worker.audit.metrics import border_band
from worker.audit.spray import Clustering

WRONG_WEIGHT = 0.5
# A term at least this large is spelled out among the suspect's reasons.
REASON_AT = {"outside": 0.5, "border": 0.25, "atypical": 0.25}


def uniform_border_share(side: int) -> float:
    """The share of a uniform map's relevance in the outer band."""
    return float(border_band(side).mean())


def suspect_terms(
    energy_in_box: np.ndarray, border_energy: np.ndarray, atypicality: np.ndarray, side: int
) -> dict[str, np.ndarray]:
    """The three terms per row; NaN (a metric that was None) counts as 0."""
    b = uniform_border_share(side)
    outside = np.nan_to_num(1.0 - np.asarray(energy_in_box, dtype=np.float64), nan=0.0)
    border = np.clip((np.asarray(border_energy, dtype=np.float64) - b) / (1 - b), 0.0, 1.0)
    return {
        "outside": outside,
        "border": np.nan_to_num(border, nan=0.0),
        "atypical": np.nan_to_num(np.asarray(atypicality, dtype=np.float64), nan=0.0),
    }


def suspect_scores(terms: dict[str, np.ndarray], correct: np.ndarray) -> np.ndarray:
    """w · (outside + border + atypical); `correct` is 1, 0, or -1 where there is no label."""
    weight = np.where(np.asarray(correct) == 0, WRONG_WEIGHT, 1.0)
    return weight * (terms["outside"] + terms["border"] + terms["atypical"])


def cluster_atypicality(clustering: Clustering) -> np.ndarray:
    """Per cluster: (1 - share / largest share) · (1 - cos(its mean map, the rest's))."""
    clusters = clustering.clusters
    if len(clusters) < 2:
        return np.zeros(len(clusters))
    shares = np.array([c.share for c in clusters])
    means = np.stack([c.mean_map.ravel().astype(np.float64) for c in clusters])
    out = np.zeros(len(clusters))
    for i in range(len(clusters)):
        others = np.delete(np.arange(len(clusters)), i)
        rest = shares[others] @ means[others] / shares[others].sum()
        norm = np.linalg.norm(means[i]) * np.linalg.norm(rest)
        cosine = float(means[i] @ rest / norm) if norm > 0 else 0.0
        out[i] = (1 - shares[i] / shares.max()) * (1 - cosine)
    return out


def reasons(terms: dict[str, float], *, energy_in_box: float, border_energy: float,
            cluster_share: float, class_name: str, side: int, correct: int) -> list[str]:
    """The plain-language reasons behind one suspect's score."""
    out = []
    if terms["outside"] >= REASON_AT["outside"]:
        out.append(f"{1 - energy_in_box:.0%} of the relevance lies outside the object")
    if terms["border"] >= REASON_AT["border"]:
        out.append(
            f"{border_energy:.0%} of the relevance lies in the outer band "
            f"(a uniform map puts {uniform_border_share(side):.0%} there)"
        )
    if terms["atypical"] >= REASON_AT["atypical"]:
        out.append(
            f"its map belongs to a small strategy cluster ({cluster_share:.0%} of class "
            f"{class_name}) that looks elsewhere than the rest of the class"
        )
    if correct == 0:
        out.append("the prediction is wrong (its score counts half)")
    return out
