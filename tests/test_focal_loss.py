"""families.retinanet.loss.focal_loss_sum: torchvision's sigmoid focal loss over the kept anchors, with the same
value and gradient, computed without copies of the kept rows."""

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from metaanchor.families.retinanet.loss import focal_loss_sum

C = 7


def _case(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(2, 500, C, generator=g, dtype=torch.float64) * 4).to(dtype).requires_grad_()
    labels = torch.randint(-1, C, (2, 500), generator=g)  # -1: negative anchor
    keep = torch.rand(2, 500, generator=g) > 0.1  # False: ignored (between the IoU thresholds)
    return logits, labels, keep


def _torchvision(logits, labels, keep, alpha=0.25, gamma=2.0):
    target = torch.zeros_like(logits)
    target[labels >= 0] = torch.nn.functional.one_hot(labels[labels >= 0], C).to(logits.dtype)
    return sigmoid_focal_loss(logits[keep], target[keep], alpha, gamma, reduction="sum")


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.5, 1.5), (0.75, 0.0)])
def test_value_and_gradient_equal_torchvisions_in_float64(alpha, gamma):
    logits, labels, keep = _case(torch.float64)
    ours = focal_loss_sum(logits, labels, keep, alpha, gamma)
    ref = _torchvision(logits, labels, keep, alpha, gamma)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=0)
    g_ours, = torch.autograd.grad(ours, logits)
    g_ref, = torch.autograd.grad(ref, logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-13)
    assert g_ours[~keep].abs().max() == 0  # ignored anchors get no gradient


def test_float32_agrees_with_torchvision_to_rounding_and_passes_gradcheck():
    logits, labels, keep = _case(torch.float32, seed=1)
    ours, ref = focal_loss_sum(logits, labels, keep), _torchvision(logits, labels, keep)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(ref, logits)[0],
                               rtol=1e-5, atol=1e-6)
    small = torch.randn(1, 30, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(-1, 3, (1, 30), generator=torch.Generator().manual_seed(2))
    assert torch.autograd.gradcheck(lambda x: focal_loss_sum(x, labels, torch.ones(1, 30, dtype=torch.bool)), (small,))


def test_half_precision_logits_are_summed_in_float32_and_get_a_gradient_of_their_dtype():
    logits, labels, keep = _case(torch.bfloat16, seed=3)
    ours = focal_loss_sum(logits, labels, keep)
    ref = _torchvision(logits.detach().float().requires_grad_(), labels, keep)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    grad, = torch.autograd.grad(ours, logits)
    assert grad.dtype == torch.bfloat16
