"""Evaluation protocols: which samples train and which test, fold by fold.

    loso           leave one subject out (the default; subjects = dataset/subject groups)
    kfold-subject  k folds by subject (scikit-learn GroupKFold)
    random-frames  the original's random split of samples: frames of one clip land on both sides.
                   LEAKY - kept only to measure how much it inflates scores.
"""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, ShuffleSplit

PROTOCOLS = ("loso", "kfold-subject", "random-frames")
LEAKY = {"random-frames"}


def splits(protocol: str, groups: np.ndarray, folds: int = 5, seed: int = 0, test_size: float = 0.2):
    """-> list of (fold name, train indices, test indices)."""
    groups = np.asarray(groups)
    idx = np.arange(len(groups))
    subjects = sorted(set(groups.tolist()))
    if protocol == "loso":
        if len(subjects) < 2:
            raise ValueError(f"LOSO needs at least 2 subjects, found {len(subjects)}")
        return [(str(s), idx[groups != s], idx[groups == s]) for s in subjects]
    if protocol == "kfold-subject":
        k = min(folds, len(subjects))
        if k < 2:
            raise ValueError(f"kfold-subject needs at least 2 subjects, found {len(subjects)}")
        gkf = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(f"fold{i + 1}", tr, te) for i, (tr, te) in enumerate(gkf.split(idx, groups=groups))]
    if protocol == "random-frames":
        tr, te = next(ShuffleSplit(1, test_size=test_size, random_state=seed).split(idx))
        return [("random", tr, te)]
    raise ValueError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")


def validation_split(train_idx: np.ndarray, groups: np.ndarray, protocol: str, frac: float = 0.2,
                     seed: int = 0):
    """Split a training fold into (fit, val) for early stopping: by subject, except under the
    leaky random-frames protocol where the split is random like the protocol itself."""
    g = np.asarray(groups)[train_idx]
    if protocol == "random-frames" or len(set(g.tolist())) < 2:
        fit, val = next(ShuffleSplit(1, test_size=frac, random_state=seed).split(train_idx))
    else:
        fit, val = next(GroupShuffleSplit(1, test_size=frac, random_state=seed).split(train_idx, groups=g))
    return train_idx[fit], train_idx[val]
