"""Emotion spelling and the ONE table that maps source emotions to a label set (docs/datasets.md)."""
from __future__ import annotations

LABEL_SETS: dict[str, list[str]] = {
    # exactly mer.models.CLASSES, in that order
    "seed6": ["Happiness", "Surprise", "Anger", "Fear", "Sadness", "Disgust"],
    # SAMM's own five-class protocol: Disgust/Fear/Sadness are too rare in SAMM and are dropped
    "samm5": ["Anger", "Contempt", "Happiness", "Surprise", "Other"],
    # MEGC 2019 composite database
    "composite3": ["negative", "positive", "surprise"],
}

DATASETS = ("samm", "casme2", "smic", "folder")

# composite3 per dataset (MEGC 2019). Everything not listed is dropped.
_COMPOSITE3 = {
    "samm": {"Anger": "negative", "Contempt": "negative", "Disgust": "negative", "Fear": "negative",
             "Sadness": "negative", "Happiness": "positive", "Surprise": "surprise"},
    # MEGC 2019 took only Disgust and Repression as negative for CASME II
    "casme2": {"Disgust": "negative", "Repression": "negative", "Happiness": "positive",
               "Surprise": "surprise"},
    "smic": {"Negative": "negative", "Positive": "positive", "Surprise": "surprise"},
}


def _identity(label_set: str) -> dict[str, str]:
    return {c: c for c in LABEL_SETS[label_set]}


# MAPPING[label_set][dataset][canonical emotion] -> label. "folder" always maps by name (see map_label).
MAPPING: dict[str, dict[str, dict[str, str]]] = {
    "seed6": {d: _identity("seed6") for d in DATASETS if d != "folder"},
    "samm5": {d: _identity("samm5") for d in DATASETS if d != "folder"},
    "composite3": _COMPOSITE3,
}


def canonical_emotion(text) -> str:
    """" happiness " -> "Happiness", "Others"/"other" -> "Other", "NEGATIVE" -> "Negative"."""
    s = " ".join(str(text).split())
    if s.casefold() in ("other", "others"):
        return "Other"
    return s[:1].upper() + s[1:].lower()


def check_label_set(label_set: str | None) -> None:
    if label_set is not None and label_set not in LABEL_SETS:
        raise ValueError(f"unknown label set {label_set!r}; known: {', '.join(LABEL_SETS)} "
                         f"(or None for the source's own labels)")


def map_label(dataset: str, emotion: str, label_set: str | None) -> str | None:
    """The class name of `emotion` (from `dataset`) in `label_set`, or None when it is not in that set
    (the clip is dropped). label_set=None keeps the emotion as it is. The folder dataset maps by name:
    an emotion equal (case-insensitively) to a class of the set maps to the set's spelling."""
    check_label_set(label_set)
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if label_set is None:
        return emotion
    if dataset == "folder":
        by_name = {c.casefold(): c for c in LABEL_SETS[label_set]}
        return by_name.get(str(emotion).strip().casefold())
    return MAPPING[label_set].get(dataset, {}).get(canonical_emotion(emotion))


def classes_of(clips, label_set: str | None = None) -> list[str]:
    """Class names for training: the label set's classes in its order (the model's output order), or,
    without a label set, the sorted distinct labels of the clips (e.g. a folder set's own class names)."""
    if label_set is not None:
        check_label_set(label_set)
        return list(LABEL_SETS[label_set])
    return sorted({c.label if c.label is not None else c.emotion for c in clips})
