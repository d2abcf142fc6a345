import pytest
from torch import nn

from ivideogpt.modes import eval_mode


def test_eval_mode_switches_every_module_and_restores_each_mode_even_on_error():
    trained, frozen = nn.Dropout(0.5), nn.Dropout(0.5).eval()
    with pytest.raises(RuntimeError, match="inside"), eval_mode(trained, frozen):
        assert not trained.training and not frozen.training
        raise RuntimeError("inside")
    assert trained.training and not frozen.training
