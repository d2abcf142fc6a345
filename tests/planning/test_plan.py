"""`ivideogpt plan` end to end on a tiny untrained world model (numbers test the plumbing only)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ivideogpt.cli import main
from ivideogpt.config import to_dict
from ivideogpt.planning.frame_reward import FrameReward, FrameRewardConfig
from ivideogpt.planning.objectives import ObjectiveConfig
from ivideogpt.planning.planner import Imagined, PlannerConfig
from ivideogpt.planning.report import success_interval
from ivideogpt.planning.run import AGENTS, PlanConfig, run_plan
from ivideogpt.train.checkpoint import save_model
from ivideogpt.world_model_io import weights_digest
from tests.eval.test_predict import make_world_model

TINY = PlannerConfig(horizon=2, samples=4)
SMALL_READER = FrameRewardConfig(resolution=32, channels=(8, 16), hidden=16)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world_model(tmp_path_factory.mktemp("wm") / "world_model")


def test_one_tiny_plan_episode_per_agent_end_to_end(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "plan"
    record = run_plan(PlanConfig(out=out, model=model_dir, tasks=("reach",), episodes=1, max_steps=3,
                                 planner=TINY, temperature=0.0))
    assert set(record["tasks"]["reach-v3"]) == set(AGENTS)
    assert record["model"]["sampling"]["temperature"] == 0.0  # the override, beside the other defaults
    assert record["model"]["sampling"]["action_guidance"] == 0.0
    assert record["model"]["weights_sha256"] == weights_digest(model_dir)  # which weights planned
    wm = record["tasks"]["reach-v3"]["world_model"]
    assert wm["episodes"] == 1 and wm["plans_per_episode"] == 3 and wm["ms_per_plan"] > 0
    assert wm["imagined_per_s"] > 0 and wm["successes"] in (0, 1) and wm["success_rate"] == wm["successes"]
    assert wm["success_ci95"][0] <= wm["success_rate"] <= wm["success_ci95"][1]
    assert "ms_per_plan" not in record["tasks"]["reach-v3"]["random"]
    saved = json.loads((out / "plan.json").read_text())
    assert saved["settings"]["planner"]["samples"] == 4 and saved["settings"]["imagined_per_plan"] == 8
    assert saved["settings"]["env"] == {"size": 32, "camera": "corner", "action_repeat": 2, "max_steps": 3}
    seeds = {e["agent"]: e["seed"] for e in saved["episodes"]}
    assert len(set(seeds.values())) == 1  # every agent plays the same scene
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert videos == ["reach-v3_simulator_ep0.mp4", "reach-v3_world_model_ep0.mp4"]
    assert "world_model planner" in (out / "report.html").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):  # an earlier output is never replaced silently
        run_plan(PlanConfig(out=out, model=model_dir, tasks=("reach",), episodes=1, max_steps=3,
                            planner=TINY))


def test_goal_image_task_and_the_simulator_planner_beats_nothing(model_dir: Path, tmp_path: Path) -> None:
    """Goal objective (VP2): the goal frame comes from the expert solving the same scene."""
    cfg = PlanConfig(out=tmp_path / "goal", model=model_dir, tasks=("reach",), episodes=1, max_steps=4,
                     agents=("world_model", "simulator"), objective=ObjectiveConfig(kind="goal"),
                     planner=PlannerConfig(horizon=2, samples=4, method="cem", iterations=2, elites=2))
    record = run_plan(cfg)
    for agent in ("world_model", "simulator"):
        assert record["tasks"]["reach-v3"][agent]["goal_solved_rate"] in (0.0, 1.0)
    assert record["settings"]["elites"] == 2


def test_workers_give_the_same_results(model_dir: Path, tmp_path: Path) -> None:
    kwargs = {"model": model_dir, "tasks": ("reach",), "episodes": 2, "max_steps": 2,
              "agents": ("random", "simulator"),
              "planner": TINY, "videos": 0}
    one = run_plan(PlanConfig(out=tmp_path / "one", workers=1, **kwargs))
    two = run_plan(PlanConfig(out=tmp_path / "two", workers=2, **kwargs))
    key = ("task", "agent", "seed", "episode_return", "success")
    assert [[e[k] for k in key] for e in one["episodes"]] == [[e[k] for k in key] for e in two["episodes"]]
    assert not (tmp_path / "one" / "videos").exists() or not any((tmp_path / "one" / "videos").iterdir())


@pytest.mark.parametrize("kwargs, match", [
    ({"tasks": ("reech",)}, "unknown Meta-World task 'reech'; did you mean reach-v3"),
    ({"agents": ("world_model", "oracle")}, r"agents: unknown \['oracle'\]"),
    ({"episodes": 0}, "episodes must be >= 1"),
    ({"tasks": ("push", "push-v3")}, "more than once"),
    ({"temperature": -0.5}, "temperature must be >= 0"),
])
def test_bad_settings_are_named(kwargs: dict, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        PlanConfig(out=tmp_path, **kwargs)


def test_a_model_with_the_wrong_action_size_is_refused(tmp_path: Path) -> None:
    model = make_world_model(tmp_path / "wm3", action_dim=3)
    with pytest.raises(ValueError, match="3-dim actions .* Meta-World's are 4-dim"):
        run_plan(PlanConfig(out=tmp_path / "out", model=model, tasks=("reach",), episodes=1, max_steps=2,
                            planner=TINY))
    assert not (tmp_path / "out").exists()  # refused before anything is written


def _squeezed(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in "()<>=.,;'")  # tyro draws a box and may wrap lines


@pytest.mark.parametrize("args, message", [
    (["--planner.horizon", "0"], "PlannerConfig.horizon must be >= 1, got 0"),
    (["--planner.method", "cem", "--planner.samples", "4", "--planner.elites", "10"],
     "PlannerConfig: samples (4) < elites (10)"),
    (["--tasks", "reach", "nope"], "unknown Meta-World task 'nope'"),
])
def test_command_line_errors_name_the_setting(args: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--out", str(tmp_path / "x"), *args])
    assert exit_info.value.code == 2
    assert _squeezed(message) in _squeezed(capsys.readouterr().err)
    assert not (tmp_path / "x").exists()


def test_command_line_refuses_to_overwrite(model_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "plan.json").write_text("{}")
    with pytest.raises(SystemExit):
        main(["plan", "--model", str(model_dir), "--out", str(tmp_path / "x"), "--episodes", "1"])
    err = capsys.readouterr().err
    assert err.startswith("ivideogpt plan: error:") and "pass --overwrite" in err and err.count("\n") == 1


def test_world_model_rollouts_pad_a_short_context(model_dir: Path) -> None:
    from ivideogpt.planning.models import WorldModelRollouts
    from ivideogpt.world_model import WorldModel

    wm = WorldModel.load(model_dir)
    frames = np.zeros((1, 32, 32, 3), np.uint8)
    out = WorldModelRollouts(wm, frames).imagine(np.zeros((3, 2, 4), np.float32), frames=True)
    assert out.frames.shape == (3, 2, 32, 32, 3) and out.rewards.shape == (3, 2)


def test_greedy_imagination_differs_only_by_the_actions(model_dir: Path) -> None:
    from ivideogpt.planning.models import WorldModelRollouts
    from ivideogpt.world_model import WorldModel

    wm = WorldModel.load(model_dir)
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    actions = np.zeros((3, 2, 4), np.float32)

    def imagined(seed: int, **sampling: float) -> np.ndarray:
        return WorldModelRollouts(wm, frames, seed, sampling).imagine(actions, frames=True).frames

    assert not np.array_equal(imagined(0), imagined(1))  # the model's default samples at temperature 1
    assert np.array_equal(imagined(0, temperature=0.0), imagined(1, temperature=0.0))


def test_common_noise_imagines_one_sequence_alike_in_every_row(model_dir: Path, tmp_path: Path) -> None:
    from ivideogpt.planning.models import WorldModelRollouts
    from ivideogpt.world_model import WorldModel

    wm = WorldModel.load(model_dir)
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    actions = np.zeros((3, 2, 4), np.float32)  # one sequence three times, sampled at temperature 1

    def distinct(period: int) -> int:
        out = WorldModelRollouts(wm, frames, 0, {}, period).imagine(actions, frames=True).frames
        return len({row.tobytes() for row in out})

    assert distinct(0) == 3 and distinct(1) == 1
    record = run_plan(PlanConfig(out=tmp_path / "p", model=model_dir, tasks=("reach",), episodes=1,
                                 max_steps=2, planner=TINY, agents=("world_model",), common_noise=True))
    assert record["settings"]["common_noise"] is True


def test_plan_passes_only_the_sampling_settings_given(model_dir: Path, tmp_path: Path) -> None:
    cfg = PlanConfig(out=tmp_path / "p", model=model_dir, tasks=("reach",), temperature=0.0, still_split=True)
    assert cfg.sampling_overrides == {"temperature": 0.0, "still_split": True}
    assert PlanConfig(out=tmp_path / "q", model=model_dir, tasks=("reach",)).sampling_overrides == {}
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        PlanConfig(out=tmp_path / "r", model=model_dir, tasks=("reach",), temperature=-1.0)


def test_bench_targets_test_above_random_and_compare_only_with_the_agents_that_ran(load_script) -> None:
    bench = load_script("planning_targets")
    wins = {"world_model": 6, "random": 1, "simulator": 10}  # of 10: Fisher one-sided p = 0.029
    rates = {a: {"success_rate": w / 10, "episodes": 10} for a, w in wins.items()}
    full = {t: {a: dict(v) for a, v in rates.items()} for t in ("reach", "push")}
    result = bench.targets(full)
    assert result["per_task"]["reach"] == {"p_above_random": pytest.approx(0.0286, abs=1e-4),
                                           "above_random": True, "share_of_simulator": 0.6}
    assert result["above_random_on_every_task"] is True and result["half_of_simulator_on_two_tasks"] is True
    full["push"]["random"]["success_rate"] = 0.3  # 6 of 10 against 3 of 10 is not clearly above (p = 0.18)
    assert bench.targets(full)["above_random_on_every_task"] is False
    alone = bench.targets({"reach": {"world_model": rates["world_model"]}})  # `--agents world_model`
    assert alone["above_random_on_every_task"] is None and alone["half_of_simulator_on_two_tasks"] is None


def test_success_interval_is_wilsons() -> None:
    assert success_interval(0, 10) == [0.0, pytest.approx(0.278, abs=1e-3)]  # never 0-0 at zero successes
    assert success_interval(10, 10) == [pytest.approx(0.722, abs=1e-3), 1.0]
    low, high = success_interval(5, 10)
    assert (low, high) == (pytest.approx(0.237, abs=1e-3), pytest.approx(0.763, abs=1e-3))
    assert success_interval(50, 100)[1] - success_interval(50, 100)[0] < high - low  # narrows with episodes


def _planning_result(path: Path, seed: int, wins: dict[str, int], episodes: int = 10, samples: int = 32,
                     weights: str = "ab12"):
    agents = {a: {"episodes": episodes, "success_rate": w / episodes, "final_success_rate": w / episodes,
                  "mean_return": 100.0 * w, "std_return": 10.0} for a, w in wins.items()}
    path.write_text(json.dumps({
        "bench": "planning", "model": {"path": "m", "weights_sha256": weights},
        "tasks": {"drawer-close-v3": agents},
        "settings": {"out": str(path.parent), "tasks": ["drawer-close"], "seed": seed, "episodes": episodes,
                     "planner": {"samples": samples}}}))
    return path


def test_bench_pool_sums_disjoint_runs_and_tests_above_random(load_script, tmp_path: Path) -> None:
    pool = load_script("planning_pool")
    wins = {"world_model": 8, "random": 3, "simulator": 10}  # 8/10 vs 3/10 alone: Fisher p = 0.035
    runs = [_planning_result(tmp_path / f"s{s}.json", s, wins) for s in (0, 1)]
    one = pool.main(pool.PoolConfig(runs=tuple(runs[:1]), json=tmp_path / "one.json"))
    both = pool.main(pool.PoolConfig(runs=tuple(runs), json=tmp_path / "both.json"))
    wm = both["tasks"]["drawer-close-v3"]["world_model"]
    assert (wm["episodes"], wm["successes"], wm["mean_return"]) == (20, 16, 800.0)
    assert wm["success_ci95"][0] < 0.8 < wm["success_ci95"][1]
    p_one = one["targets"]["per_task"]["drawer-close-v3"]["p_above_random"]
    p_both = both["targets"]["per_task"]["drawer-close-v3"]["p_above_random"]
    assert p_both < p_one < 0.05  # twice the episodes at the same rates: stronger evidence
    assert both["targets"]["per_task"]["drawer-close-v3"]["share_of_simulator"] == pytest.approx(0.8)
    close = {"world_model": 3, "random": 1, "simulator": 9}
    weak = pool.main(pool.PoolConfig(runs=(_planning_result(tmp_path / "c.json", 0, close),),
                                     json=tmp_path / "c_out.json"))
    assert weak["targets"]["above_random_on_every_task"] is False  # 3 of 10 against 1 of 10: p = 0.29


def test_bench_pool_refuses_runs_that_are_not_one_experiment(load_script, tmp_path: Path) -> None:
    pool = load_script("planning_pool")
    wins = {"world_model": 5, "random": 1, "simulator": 9}
    a = _planning_result(tmp_path / "a.json", 0, wins)
    with pytest.raises(ValueError, match="both ran drawer-close-v3 with seed 0"):
        pool.load_runs((a, _planning_result(tmp_path / "b.json", 0, wins)))
    with pytest.raises(ValueError, match="differs .* in planner"):
        pool.load_runs((a, _planning_result(tmp_path / "c.json", 1, wins, samples=64)))
    with pytest.raises(ValueError, match="differs .* in model"):  # other weights saved at the same path
        pool.load_runs((a, _planning_result(tmp_path / "d.json", 1, wins, weights="cd34")))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="cannot read planning result"):
        pool.load_runs((a, tmp_path / "bad.json"))


def test_bench_plan_ranking_scores_the_order_of_a_plans_samples(load_script, model_dir: Path,
                                                                  tmp_path: Path) -> None:
    bench = load_script("plan_ranking")
    truth = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert bench._ranking(truth * 10, truth) == pytest.approx({"spearman": 1.0, "pick_quantile": 1.0})
    assert bench._ranking(-truth, truth) == pytest.approx({"spearman": -1.0, "pick_quantile": 0.0})
    assert np.isnan(bench._ranking(truth, np.ones(5))["spearman"])  # equal true returns rank nothing
    result = bench.main(bench.RankingConfig(model=model_dir, tasks=("reach",), episodes=1, states=2, stride=1,
                                            samples=4, horizon=2, json=tmp_path / "rank.json"))
    assert len(result["states"]) == 2 and [r["step"] for r in result["states"]] == [0, 1]
    assert set(result["summary"]) == {"reach-v3", "all"}
    for row in result["states"]:
        for mode in ("independent", "common", "greedy", "teacher"):
            assert set(row[mode]) == {"spearman", "pick_quantile"}
    assert json.loads((tmp_path / "rank.json").read_text())["bench"] == "plan_ranking"
    reader = _reader(tmp_path / "rm")
    result = bench.main(bench.RankingConfig(model=model_dir, tasks=("reach",), episodes=1, states=1,
                                            samples=4, horizon=2, modes=("learned", "learned_teacher"),
                                            reward_model=reader, json=tmp_path / "rank_learned.json"))
    assert result["reward_model"] == str(reader)
    assert set(result["states"][0]["learned_teacher"]) == {"spearman", "pick_quantile"}
    with pytest.raises(SystemExit, match="goes with the modes"):
        bench.RankingConfig(model=model_dir, modes=("learned",))


def test_plan_with_a_learned_objective_end_to_end(model_dir: Path, tmp_path: Path) -> None:
    export = _reader(tmp_path / "rm32")
    objective = ObjectiveConfig(kind="learned", reward_model=export)
    record = run_plan(PlanConfig(out=tmp_path / "plan", model=model_dir, tasks=("reach",), episodes=1,
                                 max_steps=2, agents=("world_model",), planner=TINY, objective=objective))
    assert record["tasks"]["reach-v3"]["world_model"]["plans_per_episode"] == 2
    assert record["settings"]["objective"]["kind"] == "learned"
    assert record["settings"]["objective"]["reward_model"] == str(export)  # which reader scored the plans
    export16 = _reader(tmp_path / "rm16", FrameRewardConfig(resolution=16, channels=(8, 16), hidden=16))
    with pytest.raises(ValueError, match="reads 16x16 frames, the world model imagines 32x32"):
        run_plan(PlanConfig(out=tmp_path / "plan16", model=model_dir, tasks=("reach",), episodes=1,
                            agents=("world_model",), planner=TINY,
                            objective=ObjectiveConfig(kind="learned", reward_model=export16)))


def _reader(path: Path, cfg: FrameRewardConfig = SMALL_READER) -> Path:
    """An untrained frame-reward model exported to `path` (plumbing only)."""
    return save_model(path, {"reward": FrameReward(cfg)}, {"frame_reward": to_dict(cfg)})


def test_bench_planning_noise_blurs_the_order_to_the_asked_correlation(load_script, model_dir: Path,
                                                                       tmp_path: Path) -> None:
    bench = load_script("planning_noise")
    returns = np.linspace(0.0, 1.0, 400, dtype=np.float32)

    class Fake:  # a simulator whose sequences earn known returns, all in the first step
        action_dim = 4

        def __init__(self, returns: np.ndarray) -> None:
            self.returns = returns

        def imagine(self, actions: np.ndarray, frames: bool) -> Imagined:
            return Imagined(None, np.stack([self.returns, np.zeros_like(self.returns)], 1))

    for c, low, high in ((1.0, 0.999, 1.0), (0.5, 0.35, 0.65), (0.0, -0.15, 0.15)):
        rhos: list[float] = []
        scored = bench.NoisyReturns(Fake(returns), c, np.random.default_rng(0), rhos).imagine(None, False)
        assert (scored.rewards[:, 1] == 0).all() and low <= rhos[0] <= high
    rhos = []
    flat = bench.NoisyReturns(Fake(np.ones(8, np.float32)), 0.3, np.random.default_rng(0), rhos)
    assert (flat.imagine(None, False).rewards[:, 0] == 1).all() and rhos == []  # nothing to order
    result = bench.main(bench.NoiseBenchConfig(model=model_dir, tasks=("reach",), correlations=(1.0, 0.2),
                                               episodes=1, samples=4, horizon=2, max_steps=2, workers=1,
                                               json=tmp_path / "noise.json"))
    cells = result["tasks"]["reach-v3"]
    assert set(cells) == {"1", "0.2"} and all(v["episodes"] == 1 for v in cells.values())
    rho = cells["1"]["spearman_mean"]
    assert rho is None or rho == pytest.approx(1.0)  # c = 1 keeps the order (None: nothing to order)
    with pytest.raises(SystemExit, match="must lie in"):
        bench.NoiseBenchConfig(correlations=(1.5,))
