"""Feature importance of the risk-level classifier (pure function, no state, no Faust).

The classifier (:func:`agents.anomaly.forecast._level_model`) is River's ``StandardScaler``
followed by a one-vs-rest ``LogisticRegression`` per risk level. Because every input is
standardised online, a weight is the change in that level's log-odds per standard deviation
of the feature: weights of different features are on one scale and can be compared.

**Documented choice: weights, not permutation importance.** The importance of a feature is
the mean over the levels the model has met of ``|weight|``, normalised so the importances sum
to 1 (a model that has learned nothing gives ``{}``). This reads the model as it is, in
O(levels x features), needs no extra state (the signed checkpoints do not change) and is
deterministic. Permutation importance over a recent window would measure the loss a feature
saves on data, but it needs a buffer of *labelled* recent samples (labels arrive a horizon
late), a seeded shuffle and levels x window extra predictions per status call. The weights'
limits, said plainly: two strongly correlated features share their weight, and a weight is
the model's sensitivity, not proof that the feature predicts well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _classifiers(model: Any) -> Mapping[Any, Any]:
    """The per-level binary classifiers of a (pipeline ending in a) ``OneVsRestClassifier``."""
    last = model[-1] if hasattr(model, "steps") else model
    classifiers = getattr(last, "classifiers", None)
    return classifiers if isinstance(classifiers, Mapping) else {}


def weight_importance(weights_by_level: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Mean ``|weight|`` over levels, normalised to sum 1, largest first (ties by name).

    >>> weight_importance({"HIGH": {"gas": 2.0, "hour_sin": 0.0}, "LOW": {"gas": -1.0, "hour_sin": 1.0}})
    {'gas': 0.75, 'hour_sin': 0.25}
    >>> weight_importance({"LOW": {"gas": 0.0}})
    {}
    """
    levels = sorted(weights_by_level)
    names = sorted({name for lvl in levels for name in weights_by_level[lvl]})
    raw = {
        name: sum(abs(float(weights_by_level[lvl].get(name, 0.0))) for lvl in levels) / len(levels)
        for name in names
    }
    total = sum(raw.values())
    if not total > 0.0:
        return {}
    return {name: raw[name] / total for name in sorted(names, key=lambda n: (-raw[n], n))}


def level_model_importance(model: Any) -> dict[str, float]:
    """Feature importance of a risk-level classifier (``{}`` before it has learned anything)."""
    weights = {str(level): dict(clf.weights) for level, clf in _classifiers(model).items()}
    return weight_importance(weights) if weights else {}
