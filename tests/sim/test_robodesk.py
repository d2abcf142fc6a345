"""RoboDesk through the interface of Meta-World: env semantics, collection, `plan --suite robodesk`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ivideogpt.cli import main
from ivideogpt.data.collect import RobodeskCollectConfig, collect_episodes
from ivideogpt.data.relabel import RelabelConfig, relabel_rewards
from ivideogpt.data.store import EpisodeStore, read_meta
from ivideogpt.data.tokens import TokenShards
from ivideogpt.planning.objectives import ObjectiveConfig
from ivideogpt.planning.planner import PlannerConfig
from ivideogpt.planning.run import PlanConfig, run_plan
from ivideogpt.sim import load_suite
from ivideogpt.sim.robodesk import ACTION_DIM, DEFAULT_TASKS, MAX_REWARD, RoboDeskEnv, task_name
from ivideogpt.train.tokenize import TokenizeConfig, tokenize_dataset
from tests.eval.test_predict import make_world_model
from tests.train.test_tokenize import write_tokenizer


@pytest.fixture(scope="module")
def env() -> Iterator[RoboDeskEnv]:
    env = RoboDeskEnv("push_red", size=32, camera="vp2-fast", action_repeat=2, max_steps=3)
    yield env
    env.close()


def test_task_names_are_normalised_and_typos_named() -> None:
    assert task_name("push-red") == task_name(" push_red ") == "push_red"
    assert len(DEFAULT_TASKS) == 7 and "open_slide" in DEFAULT_TASKS  # VP2's
    with pytest.raises(ValueError, match="did you mean open_drawer"):
        task_name("open_drawr")
    with pytest.raises(ValueError, match="unknown camera 'corner'.*vp2"):
        RoboDeskEnv("push_red", camera="corner")
    assert load_suite("robodesk").Env is RoboDeskEnv
    with pytest.raises(ValueError, match="unknown simulator suite 'robosuite'"):
        load_suite("robosuite")


def test_seeded_scenes_repeat_whatever_ran_before(env: RoboDeskEnv) -> None:
    first, _ = env.reset(seed=3)
    other, _ = env.reset(seed=4)
    np.random.seed(123)  # RoboDesk draws from the global generator: a seed must not depend on it
    again, _ = env.reset(seed=3)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_step_semantics_and_bad_actions(env: RoboDeskEnv) -> None:
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(3):
        frame, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, ACTION_DIM))
        assert 0.0 <= reward <= 2 * MAX_REWARD and not terminated and truncated == (t == 2)
        assert isinstance(info["success"], bool) and frame.shape == (32, 32, 3)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(ACTION_DIM))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="5 finite floats"):
        env.step(np.zeros(4))


def test_snapshot_restore_repeats_the_future_bit_for_bit(env: RoboDeskEnv) -> None:
    env.reset(seed=1)
    actions = np.random.default_rng(1).uniform(-1, 1, (4, ACTION_DIM)).astype(np.float32)
    env.step(actions[0])
    snap = env.snapshot()
    first = [env.advance(a) for a in actions[1:]]
    state, frame = env.state, env.render()
    env.restore(snap)
    assert [env.advance(a) for a in actions[1:]] == first
    np.testing.assert_array_equal(env.state, state)
    np.testing.assert_array_equal(env.render(), frame)
    env.restore(snap)
    assert not np.array_equal(env.state, state)  # and it did go back


def test_the_vp2_camera_is_robodesks_own_render() -> None:
    vp2 = RoboDeskEnv("open_slide", size=32, camera="vp2", action_repeat=1, max_steps=1)
    fast = RoboDeskEnv("open_slide", size=32, camera="vp2-fast", action_repeat=1, max_steps=1)
    try:
        a, _ = vp2.reset(seed=0)
        b, _ = fast.reset(seed=0)
        np.testing.assert_array_equal(a, vp2._desk.render(resize=True))  # what VP2 scores
        assert a.mean() > b.mean() + 5  # without its shadow map the scene is drawn darker (module docstring)
    finally:
        vp2.close()
        fast.close()


def test_collect_robodesk_records_random_policies_and_refuses_an_expert(tmp_path: Path) -> None:
    out = collect_episodes(RobodeskCollectConfig(out=tmp_path / "rd", tasks=("push-red", "open_slide"),
                                                 episodes=1, size=32, camera="vp2-fast", action_repeat=2,
                                                 max_steps=3, workers=1))
    meta = read_meta(out)
    assert meta.source == "robodesk" and meta.action_dim == ACTION_DIM and meta.num_episodes == 2
    assert meta.extra["tasks"] == ["push_red", "open_slide"] and meta.extra["camera"] == "vp2-fast"
    assert {e.policy for e in meta.episodes} <= {"smooth_random", "random"}
    episode = EpisodeStore(out)[0]
    assert episode.frames.shape == (4, 32, 32, 3) and episode.actions.shape == (4, ACTION_DIM)
    assert (episode.rewards[1:] > 0).all()  # RoboDesk's dense reward (the hand's distance counts)
    with pytest.raises(ValueError, match="RoboDesk has no scripted expert"):
        RobodeskCollectConfig(out=tmp_path / "x", policy="expert:0.5,random:0.5")


def test_robodesk_counterfactual_branches_share_their_start(tmp_path: Path) -> None:
    cfg = RobodeskCollectConfig(out=tmp_path / "cf", tasks=("open_slide",), episodes=1, size=32,
                                camera="vp2-fast", action_repeat=2, max_steps=4, branches=2, branch_at=(2, 2),
                                branch_steps=2, workers=1)
    out = collect_episodes(cfg)
    meta = read_meta(out)
    assert [e.policy for e in meta.episodes] == ["smooth_random", "random"]  # no expert branch here
    a, b = EpisodeStore(out)[0], EpisodeStore(out)[1]
    np.testing.assert_array_equal(a.frames[:3], b.frames[:3])  # replayed to the same state
    assert not np.array_equal(a.frames[-1], b.frames[-1])


def test_plan_on_robodesk_end_to_end(tmp_path: Path) -> None:
    model = make_world_model(tmp_path / "wm5", action_dim=ACTION_DIM)
    record = run_plan(PlanConfig(out=tmp_path / "plan", model=model, suite="robodesk", tasks=("push_red",),
                                 episodes=1, max_steps=2, camera="vp2-fast", action_repeat=2,
                                 planner=PlannerConfig(horizon=2, samples=4)))
    assert set(record["tasks"]["push_red"]) == {"world_model", "simulator", "random"}  # no expert here
    saved = json.loads((tmp_path / "plan" / "plan.json").read_text())
    assert saved["settings"]["suite"] == "robodesk"
    assert record["settings"]["env"] == {"size": 32, "camera": "vp2-fast", "action_repeat": 2, "max_steps": 2}
    assert record["tasks"]["push_red"]["simulator"]["plans_per_episode"] == 2
    with pytest.raises(ValueError, match="RoboDesk has no scripted expert"):
        PlanConfig(suite="robodesk", agents=("expert",))
    with pytest.raises(ValueError, match="goal images"):
        PlanConfig(suite="robodesk", objective=ObjectiveConfig(kind="goal"))


def test_plan_refuses_a_meta_world_model_on_robodesk(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = make_world_model(tmp_path / "wm4", action_dim=4)
    with pytest.raises(SystemExit):
        main(["plan", "--model", str(model), "--suite", "robodesk", "--tasks", "push_red", "--out",
              str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert "takes 4-dim actions" in err and "RoboDesk's are 5-dim" in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()


def test_relabel_pays_every_clip_with_one_tasks_replayed_reward(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = collect_episodes(RobodeskCollectConfig(out=tmp_path / "rd", tasks=("push_red", "open_slide"),
                                                  episodes=2, size=16, camera="vp2-fast", action_repeat=2,
                                                  max_steps=5, workers=1))
    tokens = tokenize_dataset(TokenizeConfig(tokenizer=write_tokenizer(tmp_path / "tok"), data=[data],
                                             out=tmp_path / "tokens", device="cpu"))  # a clip is an episode
    relabel = RelabelConfig(tokens=tokens, task="push-red", out=tmp_path / "push_red")
    out = relabel_rewards(relabel)
    episodes = read_meta(data).episodes
    push_red = RoboDeskEnv("push_red", size=16, camera="vp2-fast", action_repeat=2, max_steps=5)
    for split in ("train", "val"):
        before, after = TokenShards(tokens / split), TokenShards(out / split)
        assert after.meta.extra["relabelled"]["task"] == "push_red" and after.arrays["flags"][:, 1].all()
        np.testing.assert_array_equal(after.arrays["actions"], before.arrays["actions"])
        for clip, (_, e, start) in enumerate(before.arrays["index"]):
            assert start == 0
            old, new = before.arrays["rewards"][clip], after.arrays["rewards"][clip]
            if episodes[e].task == "push_red":
                np.testing.assert_array_equal(new, old)  # its own task: the replay gives the record back
                continue
            push_red.reset(seed=episodes[e].seed)  # the scene of the open_slide episode, paid by push_red
            paid = [push_red.step(a)[1] for a in before.arrays["actions"][clip, 1:]]
            np.testing.assert_allclose(new[1:], paid, rtol=1e-6)
            assert not np.allclose(new, old)  # open_slide paid otherwise
    push_red.close()
    with pytest.raises(FileExistsError, match="--overwrite"):
        relabel_rewards(relabel)
    relabel_rewards(dataclasses.replace(relabel, task="push_blue", overwrite=True))
    assert TokenShards(out / "train").meta.extra["relabelled"]["task"] == "push_blue"
    meta = json.loads((tokens / "train" / "meta.json").read_text())
    meta["extra"]["collect"]["seed"] = 1  # another collection's scenes: the replay check refuses them
    (tokens / "train" / "meta.json").write_text(json.dumps(meta))
    for task in ("push_red", "push_blue"):  # checked by its own episodes; by the first, recorded for another
        with pytest.raises(SystemExit):
            main(["relabel", "--tokens", str(tokens), "--task", task, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert "not in the collection's order" in err and "Traceback" not in err
        assert not (tmp_path / "x").exists()
    meta["extra"]["frame_stride"] = 2  # every second frame: the actions between them are not in the clips
    (tokens / "train" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="needs the shards of --frame-stride 1"):
        relabel_rewards(dataclasses.replace(relabel, out=tmp_path / "y"))
    meta["extra"]["collect"]["tasks"] = ["reach-v3"]  # Meta-World: every task its own scene
    (tokens / "train" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not the shards of a `collect robodesk` dataset"):
        relabel_rewards(dataclasses.replace(relabel, out=tmp_path / "y"))
