import pytest
import torch

from ivideogpt.data.motion import moving_codes


def test_only_the_patches_that_changed_since_the_last_context_frame_move() -> None:
    frames = torch.zeros(1, 4, 8, 8, 3, dtype=torch.uint8)  # 2 context + 2 future frames, 2x2 grid
    frames[0, 0, :4, :4] = 200  # the first context frame differs: ignored, only the last one counts
    frames[0, 2, 5, 6] = 30  # future frame 0: one pixel of the bottom-right patch, above 20 grey levels
    frames[0, 3, 1, 1] = 15  # future frame 1: below the threshold
    moving = moving_codes(frames, tc=2, grid=2)
    assert moving.shape == (1, 2, 4)
    assert moving[0, 0].tolist() == [False, False, False, True]
    assert not moving[0, 1].any()
    assert moving_codes(frames, tc=2, grid=2, threshold=10)[0, 1].tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="do not split into a 3x3 grid"):
        moving_codes(frames, tc=2, grid=3)
