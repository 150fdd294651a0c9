"""The paper's losses: focal classification and the pairwise supervised contrastive loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Focal loss over a softmax; ``gamma = 0`` is plain cross-entropy.

    ``target`` is either class indices (n,) or a target distribution (n, c) whose rows
    sum to 1 (several positives share the mass, as in the contrastive rows below).
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2:
            raise ValueError(f"logits must be (n, c), got {tuple(logits.shape)}")
        if target.dim() == 1:
            target = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        if target.shape != logits.shape:
            raise ValueError(
                f"target {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
            )
        log_p = F.log_softmax(logits.float(), dim=1)
        weight = (1.0 - log_p.exp()).pow(self.gamma) if self.gamma else 1.0
        return -(target * weight * log_p).sum(dim=1).mean()


class PairwiseContrastiveLoss(nn.Module):
    """L_con = sum over S11, S12, S22 of [focal along rows + focal along columns].

    S_ij = t * E_i_norm @ E_j_norm^T. The positives of a row are all columns of the same
    type (the label matrix, not just the diagonal), so it also holds for ``k > 1`` crops
    per type per batch; their target mass is shared equally.
    """

    PAIRS = ((0, 0), (0, 1), (1, 1))

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        self.focal = FocalLoss(gamma)

    def forward(
        self,
        embeddings: tuple[torch.Tensor, torch.Tensor],
        labels: torch.Tensor,
        scale: torch.Tensor,
    ) -> torch.Tensor:
        first, second = embeddings
        if first.shape != second.shape or first.shape[0] != labels.shape[0]:
            raise ValueError(
                f"embeddings {tuple(first.shape)}, {tuple(second.shape)} and labels "
                f"{tuple(labels.shape)} do not describe two aligned batches"
            )
        normalised = (F.normalize(first.float(), dim=1), F.normalize(second.float(), dim=1))
        positives = (labels[:, None] == labels[None, :]).float()
        # every row and column holds its own positive at least, so no division by zero
        rows = positives / positives.sum(dim=1, keepdim=True)
        columns = (positives / positives.sum(dim=0, keepdim=True)).T
        loss = first.new_zeros((), dtype=torch.float32)
        for i, j in self.PAIRS:
            similarity = scale * normalised[i] @ normalised[j].T
            loss = loss + self.focal(similarity, rows) + self.focal(similarity.T, columns)
        return loss


class SCLObjective(nn.Module):
    """L_total = lambda_con * L_con + lambda_cls * (focal(P1, y) + focal(P2, y))."""

    def __init__(self, lambda_con: float = 1.0, lambda_cls: float = 1.0, gamma: float = 2.0):
        super().__init__()
        self.lambda_con = lambda_con
        self.lambda_cls = lambda_cls
        self.contrastive = PairwiseContrastiveLoss(gamma)
        self.classification = FocalLoss(gamma)

    def set_gamma(self, gamma: float) -> None:
        self.contrastive.focal.gamma = gamma
        self.classification.gamma = gamma

    def forward(self, embeddings, logits, labels, scale) -> dict[str, torch.Tensor]:
        cls = self.classification(logits[0], labels) + self.classification(logits[1], labels)
        terms = {"classification": cls}
        total = self.lambda_cls * cls
        if self.lambda_con:
            con = self.contrastive(embeddings, labels, scale)
            terms["contrastive"] = con
            total = total + self.lambda_con * con
        terms["total"] = total
        return terms
