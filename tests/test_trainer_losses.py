"""The paper's losses: focal classification and the pairwise supervised contrastive loss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.losses import FocalLoss, PairwiseContrastiveLoss, SCLObjective


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits = torch.randn(10, 24, generator=torch.Generator().manual_seed(0))
    target = torch.arange(10)
    assert torch.allclose(FocalLoss(0.0)(logits, target), F.cross_entropy(logits, target))


def test_focal_loss_down_weights_examples_already_right():
    confident = torch.tensor([[6.0, 0.0, 0.0]])
    wrong = torch.tensor([[0.0, 6.0, 0.0]])
    target = torch.tensor([0])
    ce, focal = FocalLoss(0.0), FocalLoss(2.0)
    # an easy example loses almost all its weight, a hard one keeps most of it
    assert focal(confident, target) / ce(confident, target) < 0.01
    assert focal(wrong, target) / ce(wrong, target) > 0.9


def test_focal_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="does not match"):
        FocalLoss()(torch.zeros(4, 24), torch.zeros(4, 23))


def _reference_contrastive(e1, e2, labels, scale, gamma):
    """A slow loop over pairs, written independently of the vectorised module."""
    views = [F.normalize(e1, dim=1), F.normalize(e2, dim=1)]
    total = 0.0
    for i, j in ((0, 0), (0, 1), (1, 1)):
        s = scale * views[i] @ views[j].T
        for matrix in (s, s.T):
            rows = []
            for r in range(len(labels)):
                p = torch.softmax(matrix[r], dim=0)
                positives = [c for c in range(len(labels)) if labels[c] == labels[r]]
                rows.append(
                    sum(-((1 - p[c]) ** gamma) * torch.log(p[c]) for c in positives)
                    / len(positives)
                )
            total = total + torch.stack(rows).mean()
    return total


@pytest.mark.parametrize("crops_per_class", [1, 3])
def test_contrastive_loss_matches_a_loop_over_pairs(crops_per_class):
    g = torch.Generator().manual_seed(crops_per_class)
    labels = torch.arange(6).repeat_interleave(crops_per_class)
    e1, e2 = torch.randn(len(labels), 16, generator=g), torch.randn(len(labels), 16, generator=g)
    scale = torch.tensor(10.0)
    loss = PairwiseContrastiveLoss(gamma=2.0)((e1, e2), labels, scale)
    assert torch.allclose(loss, _reference_contrastive(e1, e2, labels, scale, 2.0), atol=1e-5)


def test_contrastive_loss_is_low_when_types_cluster_and_high_when_they_mix():
    labels = torch.arange(24).repeat_interleave(2)
    centres = F.normalize(torch.randn(24, 64, generator=torch.Generator().manual_seed(1)), dim=1)
    noise = torch.Generator().manual_seed(2)
    clustered = centres[labels] + 0.05 * torch.randn(48, 64, generator=noise)
    clustered_too = centres[labels] + 0.05 * torch.randn(48, 64, generator=noise)
    shuffled = clustered_too[torch.randperm(48, generator=noise)]
    loss = PairwiseContrastiveLoss(gamma=0.0)
    scale = torch.tensor(14.0)
    assert loss((clustered, clustered_too), labels, scale) * 3 < loss(
        (clustered, shuffled), labels, scale
    )


def test_contrastive_loss_refuses_batches_that_are_not_aligned():
    with pytest.raises(ValueError, match="aligned"):
        PairwiseContrastiveLoss()(
            (torch.zeros(24, 8), torch.zeros(23, 8)), torch.arange(24), torch.tensor(1.0)
        )


def test_ablation_switch_leaves_only_the_classification_term():
    g = torch.Generator().manual_seed(0)
    embeddings = (torch.randn(24, 8, generator=g), torch.randn(24, 8, generator=g))
    logits = (torch.randn(24, 24, generator=g), torch.randn(24, 24, generator=g))
    labels = torch.arange(24)
    with_scl = SCLObjective(lambda_con=1.0)(embeddings, logits, labels, torch.tensor(10.0))
    without = SCLObjective(lambda_con=0.0)(embeddings, logits, labels, torch.tensor(10.0))
    assert "contrastive" not in without
    assert torch.allclose(without["total"], with_scl["classification"])
    assert np.isclose(
        float(with_scl["total"]), float(with_scl["classification"] + with_scl["contrastive"])
    )
