from __future__ import annotations

import numpy as np
import pytest

from bcmodels.evaluation import classification_metrics


def _probs(preds: list[int], n_classes: int = 3) -> np.ndarray:
    out = np.full((len(preds), n_classes), 0.1)
    out[np.arange(len(preds)), preds] = 0.8
    return out


def test_known_confusion_matrix_gives_the_known_metrics():
    # benign: 3 right, 1 called malignant; malignant: 2 right; normal: 1 right, 1 called benign.
    labels = [0, 0, 0, 0, 1, 1, 2, 2]
    preds = [0, 0, 0, 1, 1, 1, 2, 0]
    m = classification_metrics(np.array(labels), _probs(preds))
    assert m["n_test"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion"]["benign"] == {"benign": 3, "malignant": 1, "normal": 0}
    assert m["confusion"]["normal"] == {"benign": 1, "malignant": 0, "normal": 1}
    assert m["benign"]["precision"] == pytest.approx(3 / 4) and m["benign"]["recall"] == pytest.approx(3 / 4)
    assert m["malignant"]["precision"] == pytest.approx(2 / 3) and m["malignant"]["recall"] == 1.0
    assert m["normal"]["precision"] == 1.0 and m["normal"]["recall"] == pytest.approx(1 / 2)
    assert m["malignant"]["f1"] == pytest.approx(0.8)
    f1 = [0.75, 0.8, 2 / 3]
    assert m["macro"]["f1"] == pytest.approx(np.mean(f1))
    assert m["weighted"]["f1"] == pytest.approx(np.average(f1, weights=[4, 2, 2]))
    assert m["benign"]["support"] == 4


def test_perfect_classifier_scores_one_everywhere():
    labels = np.array([0, 1, 2, 0, 1, 2])
    m = classification_metrics(labels, _probs(labels.tolist()))
    assert m["accuracy"] == m["macro"]["f1"] == m["weighted"]["f1"] == 1.0
    assert m["roc_auc"] == {"benign": 1.0, "malignant": 1.0, "normal": 1.0, "macro": 1.0}


def test_roc_auc_uses_probabilities_not_just_the_argmax():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array([[0.6, 0.3, 0.1], [0.4, 0.5, 0.1], [0.45, 0.45, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.5, 0.2, 0.3]])
    m = classification_metrics(labels, probs)
    # benign scores 0.6 and 0.4 against 0.45, 0.2, 0.3, 0.5: 0.6 beats all 4, 0.4 beats 2: 6 of 8 pairs
    assert m["roc_auc"]["benign"] == pytest.approx(6 / 8)


def test_a_class_absent_from_the_test_set_has_no_auc():
    labels = np.array([0, 0, 1, 1])
    m = classification_metrics(labels, _probs([0, 1, 1, 1]))
    assert "normal" not in m["roc_auc"] and m["normal"]["support"] == 0
