"""World-model envs: gymnasium's env checker, seeding, resets from a dataset folder, the vector env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from ivideogpt.data.episode import Episode
from ivideogpt.data.store import DatasetWriter
from ivideogpt.envs import WorldModelEnv, WorldModelVectorEnv
from ivideogpt.world_model import WorldModel
from tests.test_world_model import SIZE, tiny_world_model

NUM_EPISODES, LENGTH = 3, 4


def constant_episodes() -> np.ndarray:
    """uint8 (3, 4, H, W, 3): frame t of episode e is filled with 40 e + t, so a frame names its source."""
    values = 40 * np.arange(NUM_EPISODES)[:, None] + np.arange(LENGTH)[None, :]
    shape = (NUM_EPISODES, LENGTH, SIZE, SIZE, 3)
    return np.broadcast_to(values[:, :, None, None, None], shape).astype(np.uint8)


def set_termination(wm: WorldModel, logit: float) -> WorldModel:
    """Make the done head predict the constant termination logit `logit` (the tiny model's head is random)."""
    with torch.no_grad():
        wm.transformer.heads.done.weight.zero_()
        wm.transformer.heads.done.bias.fill_(logit)
    return wm


@pytest.fixture(scope="module")
def wm() -> WorldModel:
    return set_termination(tiny_world_model(context_frames=2), -20.0)  # never terminates


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "episodes"
    with DatasetWriter(root, "test", SIZE, action_dim=3, fps=10.0) as writer:
        for ep in constant_episodes():
            writer.add(Episode(frames=ep, actions=np.zeros((LENGTH, 3), np.float32)))
    return root


def test_env_passes_the_gymnasium_checker(wm: WorldModel, dataset: Path) -> None:
    check_env(WorldModelEnv(wm, dataset, max_steps=3, render_mode="rgb_array"), skip_render_check=False)


def test_reset_draws_real_context_from_a_dataset_folder(wm: WorldModel, dataset: Path) -> None:
    env = WorldModelEnv(wm, dataset, max_steps=2)
    obs, info = env.reset(seed=0)
    # the observation is the last of the 2 context frames of episode e starting at frame s
    assert obs.dtype == np.uint8 and obs.shape == (SIZE, SIZE, 3)
    assert (obs == 40 * info["episode"] + info["start"] + 1).all() and 0 <= info["start"] <= LENGTH - 2
    starts = {tuple(env.reset(seed=s)[1].values()) for s in range(20)}
    assert len(starts) > 3  # the seeded RNG spreads resets over episodes and windows


def test_episode_seeding_and_truncation(wm: WorldModel) -> None:
    env = WorldModelEnv(wm, constant_episodes(), max_steps=2)
    action = np.full(3, 0.5, np.float32)

    def episode(seed: int) -> list[np.ndarray]:
        env.reset(seed=seed)
        first = env.step(action)
        second = env.step(action)
        assert not first[3] and second[3]  # truncated on step max_steps
        return [first[0], second[0]]

    np.testing.assert_array_equal(episode(1), episode(1))
    assert not np.array_equal(episode(1)[1], episode(2)[1])
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(action)


def test_env_reset_from_given_frames_and_bad_actions(wm: WorldModel) -> None:
    env = WorldModelEnv(wm, constant_episodes())
    obs, info = env.reset(seed=0, options={"context": constant_episodes()[2, :2]})
    assert (obs == 81).all() and info == {"episode": -1, "start": -1}
    with pytest.raises(ValueError, match=r"expected shape \(1, 3\) \(action_dim=3\)"):
        env.step(np.zeros(4, np.float32))


def test_env_construction_errors(wm: WorldModel, dataset: Path) -> None:
    with pytest.raises(ValueError, match="2 frame"):
        WorldModelEnv(wm, constant_episodes()[:, :1])  # 1-frame episodes: no 2-frame context
    with pytest.raises(ValueError, match="32x32, the world model expects 64x64"):
        WorldModelEnv(wm, np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="action-free"):
        WorldModelEnv(tiny_world_model(action_dim=0), dataset)
    with pytest.raises(ValueError, match="max_steps"):
        WorldModelEnv(wm, dataset, max_steps=0)


def test_termination_comes_from_the_done_head(dataset: Path) -> None:
    wm = set_termination(tiny_world_model(context_frames=2), 20.0)
    env = WorldModelEnv(wm, dataset, max_steps=5)
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(np.zeros(3, np.float32))
    assert terminated and not truncated
    envs = WorldModelVectorEnv(wm, dataset, num_envs=2, max_steps=5)
    envs.reset(seed=0)
    assert envs.step(np.zeros((2, 3), np.float32))[2].all()


def test_vector_env_shapes_spaces_and_autoreset(wm: WorldModel, dataset: Path) -> None:
    envs = WorldModelVectorEnv(wm, dataset, num_envs=4, max_steps=2)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (4, SIZE, SIZE, 3) and obs.dtype == np.uint8 and obs in envs.observation_space
    assert info["episode"].shape == (4,) and info["_episode"].all()
    actions = envs.action_space.sample()
    assert actions.shape == (4, 3)
    for t in range(2):
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        assert obs.shape == (4, SIZE, SIZE, 3) and rewards.shape == (4,) and rewards.dtype == np.float32
        assert terminated.shape == truncated.shape == (4,) and truncated.all() == (t == 1)
    # next-step autoreset: every row restarts from a real context frame, reward 0, not done
    obs, rewards, terminated, truncated, _ = envs.step(actions)
    assert not rewards.any() and not terminated.any() and not truncated.any()
    assert all(np.unique(o).size == 1 and int(o[0, 0, 0]) % 40 in (1, 2, 3) for o in obs)


def test_vector_env_restarts_rows_alone(wm: WorldModel) -> None:
    envs = WorldModelVectorEnv(wm, constant_episodes(), num_envs=3, max_steps=3)
    envs.reset(seed=0)
    envs.step(np.zeros((3, 3), np.float32))
    envs._needs_reset[1] = True  # as if row 1 had terminated: it restarts while rows 0 and 2 go on
    obs, rewards, _, truncated, _ = envs.step(np.zeros((3, 3), np.float32))
    assert [c.rows.tolist() for c in envs._cohorts] == [[0, 2], [1]]
    assert np.unique(obs[1]).size == 1 and rewards[1] == 0 and not truncated.any()
    obs, _, _, truncated, _ = envs.step(np.zeros((3, 3), np.float32))
    assert truncated.tolist() == [True, False, True]  # rows 0 and 2 reached max_steps, row 1 did not


def test_vector_env_is_seeded(wm: WorldModel) -> None:
    def run(seed: int) -> np.ndarray:
        envs = WorldModelVectorEnv(wm, constant_episodes(), num_envs=2, max_steps=5)
        envs.reset(seed=seed)
        return envs.step(np.zeros((2, 3), np.float32))[0]

    torch.manual_seed(123)  # global torch RNG state must not matter
    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))
