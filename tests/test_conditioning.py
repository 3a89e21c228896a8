import pytest
import torch

from higen_core import appearance_matrix, appearance_matrix_from_features, motion_factors_from_latents


@pytest.mark.parametrize("gamma", ["0.0", "0.4", "1.0"])
def test_appearance_matrix_is_the_official_eq4(reference_cases, gamma):
    assert torch.equal(appearance_matrix(float(gamma), 32, 32), reference_cases[f"appearance_matrix.{gamma}"])


def test_appearance_matrix_rows_are_padded_to_the_model_width():
    matrix = appearance_matrix(1.0, 4, 8)
    assert matrix.shape == (4, 8)
    assert torch.equal(matrix[:, 4:], torch.zeros(4, 4))
    torch.testing.assert_close(matrix[0, :4], torch.tensor([1.0, 2 / 3, 1 / 3, 0.0]))
    with pytest.raises(ValueError, match="appearance width"):
        appearance_matrix(1.0, 9, 8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        appearance_matrix(1.5, 4)


def test_still_clip_has_no_motion_and_identical_appearance():
    still = torch.randn(2, 4, 1, 6, 6).repeat(1, 1, 5, 1, 1)
    assert torch.equal(motion_factors_from_latents(still), torch.zeros(2, 4))
    features = torch.randn(2, 1, 16).repeat(1, 5, 1)
    torch.testing.assert_close(appearance_matrix_from_features(features, 8)[:, :, :5], torch.ones(2, 5, 5))


def test_motion_factor_is_the_rounded_latent_distance():
    latents = torch.zeros(1, 4, 3, 2, 2)
    latents[:, :, 1] = 1.0  # frame 0 -> 1 moves by sqrt(16) = 4; frame 1 -> 2 by 4 again
    latents[:, 0, 2] = 10.0
    assert motion_factors_from_latents(latents).tolist() == [[4.0, round((4 * 81 + 12) ** 0.5)]]


def test_the_shortest_clips_and_wrong_shapes():
    # One frame is a prior: its matrix is the single similarity 1, padded to the width.
    assert torch.equal(appearance_matrix(0.7, 1), torch.ones(1, 1))
    assert torch.equal(appearance_matrix(0.7, 1, 3), torch.tensor([[1.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="num_frames must be at least 1; got 0"):
        appearance_matrix(0.5, 0)
    # Two frames are the fewest that move, whatever the latents' height.
    pair = torch.zeros(1, 4, 2, 1, 1)
    pair[:, :, 1] = 0.5
    assert motion_factors_from_latents(pair).tolist() == [[1.0]]
    for shape in ((1, 4, 1, 8, 8), (1, 4, 8, 8)):
        with pytest.raises(ValueError, match=rf"F >= 2; got shape \({shape[0]}, {shape[1]},"):
            motion_factors_from_latents(torch.zeros(shape))
    with pytest.raises(ValueError, match=r"features must be \(B, F, D\); got shape \(5, 16\)"):
        appearance_matrix_from_features(torch.zeros(5, 16))


def test_the_appearance_matrix_of_features_is_as_wide_as_the_clip_by_default():
    features = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(0))
    matrix = appearance_matrix_from_features(features)
    assert matrix.shape == (2, 3, 3)
    torch.testing.assert_close(matrix, appearance_matrix_from_features(features, 3))
    with pytest.raises(ValueError, match="appearance width is 2"):
        appearance_matrix_from_features(features, 2)


def test_each_motion_factor_measure_is_its_norm_of_the_frame_difference():
    latents = torch.zeros(1, 2, 2, 1, 2)  # (B, C, F, H, W): one frame pair
    latents[0, :, 1] = torch.tensor([[[30.0, -40.0]], [[120.0, 0.0]]])  # its difference: 30, -40, 120, 0
    assert motion_factors_from_latents(latents, "scaled:l2").tolist() == [[130.0]]
    assert motion_factors_from_latents(latents, "scaled:squared_l2").tolist() == [[16900.0]]
    assert motion_factors_from_latents(latents, "scaled:l1").tolist() == [[190.0]]
    # "unscaled" measures the VAE's own latents: the UNet's divided by the scaling factor.
    assert motion_factors_from_latents(latents, "unscaled:l1", scaling_factor=0.5).tolist() == [[380.0]]
    assert motion_factors_from_latents(latents, "unscaled:squared_l2", 0.5).tolist() == [[67600.0]]
    assert motion_factors_from_latents(latents, "unscaled:l2", 0.5).tolist() == [[260.0]]
    with pytest.raises(ValueError, match="'unscaled:l2' needs the VAE's scaling_factor"):
        motion_factors_from_latents(latents, "unscaled:l2")
    with pytest.raises(ValueError, match=r"must be one of scaled:l2, .*unscaled:l1; got 'l2'"):
        motion_factors_from_latents(latents, "l2")
