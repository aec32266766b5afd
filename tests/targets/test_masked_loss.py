import torch

from motionmae.targets import masked_mse, per_token_error


def _example():
    target = torch.zeros(2, 4, 3)
    pred = torch.zeros(2, 2, 3)
    pred[0, 0] = 1.0  # error 1 on token masked_idx[0, 0] = 1
    pred[0, 1] = 2.0  # error 4 on token 3
    pred[1, 0] = 3.0  # error 9 on token 0
    masked_idx = torch.tensor([[1, 3], [0, 2]])
    return pred, target, masked_idx


def test_per_token_error_known_answer():
    pred, target, masked_idx = _example()
    torch.testing.assert_close(per_token_error(pred, target, masked_idx),
                               torch.tensor([[1.0, 4.0], [9.0, 0.0]]))


def test_masked_mse_gathers_the_hidden_targets():
    pred, target, masked_idx = _example()
    target[0, 1] = 1.0  # now the first prediction is exact
    target[1, 1] = 100.0  # visible: ignored
    torch.testing.assert_close(masked_mse(pred, target, masked_idx), torch.tensor(13.0 / 4))


def test_masked_mse_token_weights_ignore_zero_weight_tokens():
    pred, target, masked_idx = _example()
    weight = torch.ones(2, 4)
    weight[1, 0] = 0.0  # drop the error-9 token
    weight[0, 3] = 3.0  # error-4 token counts three times
    expected = (1.0 + 3 * 4.0 + 0.0) / (1.0 + 3.0 + 1.0)
    torch.testing.assert_close(masked_mse(pred, target, masked_idx, weight),
                               torch.tensor(expected))
    torch.testing.assert_close(masked_mse(pred, target, masked_idx, torch.ones(2, 4)),
                               masked_mse(pred, target, masked_idx))


def test_masked_mse_all_zero_weights_is_zero_with_finite_grad():
    pred, target, masked_idx = _example()
    pred.requires_grad_(True)
    loss = masked_mse(pred, target, masked_idx, torch.zeros(2, 4))
    loss.backward()
    assert loss == 0 and torch.isfinite(pred.grad).all()


def test_bf16_predictions_give_an_fp32_loss():
    pred, target, masked_idx = _example()
    loss = masked_mse(pred.bfloat16(), target, masked_idx)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, masked_mse(pred, target, masked_idx))
