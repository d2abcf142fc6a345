"""The Meta-World pixel env: task names, rendering orientation, step semantics, seeding, the experts."""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np
import pytest

from ivideogpt.sim.metaworld import (
    ACTION_DIM,
    DEFAULT_TASKS,
    MAX_REWARD,
    MetaWorldEnv,
    expert_policy,
    task_name,
)


@pytest.fixture
def env() -> Iterator[MetaWorldEnv]:
    env = MetaWorldEnv("reach", size=32, seed=0, action_repeat=2, max_steps=5)
    yield env
    env.close()


def test_task_name_accepts_short_and_full_names_and_suggests_on_typos() -> None:
    assert task_name("push") == "push-v3"
    assert task_name(" push-v3 ") == "push-v3"
    with pytest.raises(ValueError, match="did you mean pick-place-v3"):
        task_name("pick-plaec")


def test_unknown_camera_is_named() -> None:
    with pytest.raises(ValueError, match="unknown camera 'nope'.*corner2"):
        MetaWorldEnv("reach", size=16, camera="nope")


def _roll_upright(model: mujoco.MjModel, data: mujoco.MjData, cam: int) -> None:
    """Roll camera `cam` about its viewing axis so that its up axis points up (same position and aim)."""
    forward = -data.cam_xmat[cam].reshape(3, 3)[:, 2]
    up = np.array([0.0, 0.0, 1.0]) - forward[2] * forward
    up /= np.linalg.norm(up)
    rotation = np.stack([np.cross(forward, up), up, -forward], axis=1)  # camera x, y, z axes in the world
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rotation.flatten())
    model.cam_quat[cam] = quat  # the corner cameras hang off the world body, so this is the world rotation
    mujoco.mj_forward(model, data)


@pytest.mark.parametrize("camera", ["corner", "corner2"])
def test_corner_frames_are_upright(camera: str) -> None:
    # The corner cameras are mounted upside down. Our frame must match what the same camera rolled
    # upright sees (up to the small roll difference), and be clearly closer to it than the raw render
    # or a rows-only flip (a left-right mirror image).
    env = MetaWorldEnv("reach", size=64, camera=camera, seed=0)
    env.reset(seed=0)
    ours = env.render().astype(np.float32)
    model, data, cam = env._env.model, env._env.data, env._renderer.camera_id
    plain = mujoco.Renderer(model, 64, 64)
    plain.update_scene(data, camera=cam)
    raw = plain.render().astype(np.float32)  # what MuJoCo gives for the camera as mounted
    plain.close()
    _roll_upright(model, data, cam)
    assert data.cam_xmat[cam].reshape(3, 3)[2, 1] > 0
    upright = env.render().astype(np.float32)  # an upright camera is not rotated by the renderer
    env.close()
    err = {
        "ours": np.abs(ours - upright).mean(),
        "raw": np.abs(raw - upright).mean(),
        "rows_flipped": np.abs(raw[::-1] - upright).mean(),
    }
    assert err["ours"] < 0.5 * min(err["raw"], err["rows_flipped"]), err


def test_step_returns_frames_rewards_and_truncates(env: MetaWorldEnv) -> None:
    frame, info = env.reset(seed=3)
    assert frame.dtype == np.uint8 and frame.shape == (32, 32, 3)
    assert info["state"].shape == (39,) and info["success"] is False
    assert env.observation_space.contains(frame)
    for t in range(1, 6):
        frame, reward, terminated, truncated, info = env.step(np.array([0.0, 1.0, 0.0, -1.0]))
        assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8
        assert 0.0 <= reward <= MAX_REWARD * env.action_repeat
        assert isinstance(info["success"], bool) and not terminated
        assert truncated == (t == 5)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(ACTION_DIM))


@pytest.mark.parametrize("action", [np.zeros(3), np.array([0.0, np.nan, 0.0, 0.0])])
def test_bad_actions_are_rejected(env: MetaWorldEnv, action: np.ndarray) -> None:
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be 4 finite floats"):
        env.step(action)


def test_reset_seed_fixes_the_episode_whatever_ran_before(env: MetaWorldEnv) -> None:
    frame_a, info_a = env.reset(seed=7)
    env.step(np.ones(ACTION_DIM))
    env.reset(seed=8)
    env.step(-np.ones(ACTION_DIM))
    frame_b, info_b = env.reset(seed=7)
    np.testing.assert_array_equal(frame_a, frame_b)
    np.testing.assert_array_equal(info_a["state"], info_b["state"])
    fresh = MetaWorldEnv("reach", size=32, seed=7, max_steps=5)
    frame_c, info_c = fresh.reset()
    fresh.close()
    np.testing.assert_array_equal(info_a["state"], info_c["state"])
    np.testing.assert_array_equal(frame_a, frame_c)
    _, info_other = env.reset(seed=9)
    assert not np.array_equal(info_a["state"][-3:], info_other["state"][-3:])  # another goal position


def test_action_repeat_holds_the_action_and_sums_rewards() -> None:
    once = MetaWorldEnv("push", size=16, seed=0, action_repeat=1, max_steps=10)
    twice = MetaWorldEnv("push", size=16, seed=0, action_repeat=2, max_steps=5)
    once.reset(seed=1)
    twice.reset(seed=1)
    action = np.array([0.5, 0.5, -0.5, 1.0])
    _, r1, *_ = once.step(action)
    frame1, r2, *_ = once.step(action)
    frame2, r12, *_ = twice.step(action)
    np.testing.assert_array_equal(frame1, frame2)
    assert r12 == pytest.approx(r1 + r2) and r1 > 0
    assert twice.metadata["render_fps"] == pytest.approx(once.metadata["render_fps"] / 2)
    assert twice.metadata["render_fps"] == pytest.approx(40.0)  # 2.5 ms timestep x 5 frame skip x 2
    once.close()
    twice.close()


def test_expert_policy_gives_clipped_float32_actions(env: MetaWorldEnv) -> None:
    env.reset(seed=0)
    action = expert_policy("reach")(env.state)
    assert action.dtype == np.float32 and action.shape == (ACTION_DIM,)
    assert np.all(np.abs(action) <= 1.0) and np.abs(action).max() > 0


@pytest.mark.slow
@pytest.mark.parametrize("task", DEFAULT_TASKS)
def test_expert_solves_default_tasks_within_100_steps(task: str) -> None:
    env = MetaWorldEnv(task, size=16, seed=0, action_repeat=2, max_steps=100)
    policy = expert_policy(task)
    env.reset(seed=123)
    solved, truncated = False, False
    while not (solved or truncated):
        _, _, _, truncated, info = env.step(policy(env.state))
        solved = info["success"]
    env.close()
    assert solved, f"the scripted expert did not solve {task} in 100 steps"


def test_the_reset_frame_shows_the_new_episode_not_where_the_last_one_ended() -> None:
    # push places its object after the hand: without a forward pass the renderer drew stale body poses
    env = MetaWorldEnv("push", size=32, seed=0, max_steps=20)
    fresh = MetaWorldEnv("push", size=32, seed=0, max_steps=20)
    try:
        env.reset(seed=3)
        for _ in range(20):
            env.step(np.array([1.0, 1.0, 0.5, 1.0]))
        after_an_episode, _ = env.reset(seed=5)
        on_a_fresh_env, _ = fresh.reset(seed=5)
        np.testing.assert_array_equal(after_an_episode, on_a_fresh_env)
    finally:
        env.close()
        fresh.close()


def test_advance_looks_past_the_last_step_of_a_long_episode() -> None:
    """A planner at the last step of an episode of 500+ simulator steps imagines beyond it; Meta-World's
    own limit (max_path_length) must not refuse those steps."""
    env = MetaWorldEnv("reach", size=32, seed=0, action_repeat=100, max_steps=5)
    env.reset(seed=0)
    for _ in range(4):
        env.step(np.zeros(ACTION_DIM))
    snap = env.snapshot()
    for _ in range(3):  # 700 simulator steps in all, Meta-World's limit being 500
        reward, _ = env.advance(np.ones(ACTION_DIM))
        assert np.isfinite(reward)
    env.restore(snap)
    *_, truncated, _ = env.step(np.zeros(ACTION_DIM))
    assert truncated  # the episode's own time limit still holds
    env.close()


def test_snapshot_restore_repeats_steps_exactly() -> None:
    """The simulator-as-model planner relies on this: imagine from a snapshot, restore, act for real."""
    env = MetaWorldEnv("push", size=32, seed=0, max_steps=5)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(2):
        frame, *_ = env.step(rng.uniform(-1, 1, ACTION_DIM))
    snap = env.snapshot()
    acts = rng.uniform(-1, 1, (3, ACTION_DIM))
    first = [env.step(a) for a in acts]
    env.restore(snap)
    np.testing.assert_array_equal(env.render(), frame)  # the renderer sees the restored scene
    for _ in range(8):  # wander off elsewhere, past the time limit (advance counts no steps)
        env.advance(rng.uniform(-1, 1, ACTION_DIM))
    env.restore(snap)
    again = [env.step(a) for a in acts]
    for (f1, r1, _, t1, i1), (f2, r2, _, t2, i2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(f1, f2)
        assert r1 == r2 and t1 == t2 and i1["success"] == i2["success"]
        np.testing.assert_array_equal(i1["state"], i2["state"])
    assert [t for *_, t, _ in again] == [False, False, True]  # the episode's own time limit still holds
    env.close()
