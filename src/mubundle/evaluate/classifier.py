"""Classifier two-sample test: can gradient-boosted trees tell two samples apart?

The ROC AUC of a classifier trained to separate sample 1 (label 0) from sample 2 (label 1),
estimated by k-fold cross-validation (folds split whole showers) on event-level features
(:func:`mubundle.evaluate.features.classifier_features`, conditions included): 0.5 means
the samples are indistinguishable with these features, 1.0 perfectly separable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mubundle.data.batch import RaggedBatch
from mubundle.evaluate.distances import NotAvailable
from mubundle.evaluate.features import classifier_features
from mubundle.evaluate.metrics import shower_ids

#: Fewer events than this per sample: no AUC (too noisy to mean anything).
MIN_EVENTS_PER_SAMPLE = 50


@dataclass(frozen=True)
class AucResult:
    """Mean and standard deviation of the ROC AUC over the folds; events used per sample."""

    auc: float | NotAvailable
    std: float | None
    n_events: int


def two_sample_auc(
    first: RaggedBatch, second: RaggedBatch, seed: int = 0, folds: int = 5, max_events: int = 20_000
) -> AucResult:
    """Cross-validated AUC of ``HistGradientBoostingClassifier`` separating ``first`` from ``second``.

    Both samples are subsampled to the same size (at most ``max_events`` each) so the
    classes are balanced and the cost bounded.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import GroupKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    n_events = min(len(first), len(second), max_events)
    if n_events < MIN_EVENTS_PER_SAMPLE:
        return AucResult(NotAvailable(f"too few events for the classifier ({n_events} < {MIN_EVENTS_PER_SAMPLE})"), None, n_events)
    rng = np.random.default_rng(seed)
    pick_first = rng.choice(len(first), n_events, replace=False)
    pick_second = rng.choice(len(second), n_events, replace=False)
    features = np.concatenate(
        [classifier_features(first.take(pick_first)), classifier_features(second.take(pick_second))]
    )
    # a feature undefined for every event (e.g. bundle energy when no event has muons) carries
    # no information, and sklearn's binning cannot handle an all-missing column
    features = features[:, ~np.all(np.isnan(features), axis=0)]
    labels = np.concatenate([np.zeros(n_events, np.int64), np.ones(n_events, np.int64)])
    # early stopping on an internal 10 % validation split: as many trees as help, no more
    classifier = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, max_leaf_nodes=31, early_stopping=True, random_state=seed
    )
    # folds split whole showers: the depths of one shower share its primary (and muons), so a
    # shower in both the training and the test fold would let the trees memorise it
    first_showers = shower_ids(first.conditions)[pick_first]
    second_showers = shower_ids(second.conditions)[pick_second] + len(first) + 1
    groups = np.concatenate([first_showers, second_showers])
    # (GroupKFold with shuffled groups: the classes stay ~balanced per fold because every shower
    # belongs to one class; StratifiedGroupKFold is a Python loop over groups, minutes at 1e5)
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    # one OpenMP thread: on a loaded 2-core machine more threads make it several times slower
    with threadpool_limits(limits=1):
        scores = cross_val_score(classifier, features, labels, groups=groups, cv=splitter, scoring="roc_auc", n_jobs=1)
    return AucResult(float(np.mean(scores)), float(np.std(scores)), n_events)
