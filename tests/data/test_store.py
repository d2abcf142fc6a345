from __future__ import annotations

import json

import numpy as np
import pytest

from ivideogpt.data.episode import Episode, EpisodeFormatError
from ivideogpt.data.store import (
    DatasetWriter,
    EpisodeStore,
    InfoConfig,
    format_summary,
    print_info,
    read_meta,
    summarize,
)

from .helpers import random_episode


def test_writer_and_store_round_trip(make_dataset):
    root = make_dataset("ds", [5, 7, 6], action_dim=3)
    store = EpisodeStore(root)
    assert len(store) == 3 and store.lengths == [5, 7, 6]
    assert store.meta.num_frames == 18 and store.meta.action_dim == 3 and store.meta.image_size == 8
    assert store[1].frames.shape == (7, 8, 8, 3) and store[-1].action_dim == 3
    meta = json.loads((root / "meta.json").read_text())
    assert meta["num_episodes"] == 3 and meta["num_frames"] == 18
    entry = {"file": "episode_000001.npz", "length": 7, "task": "task1", "seed": 1, "success": True}
    assert meta["episodes"][1] == entry
    files = ["episode_000000.npz", "episode_000001.npz", "episode_000002.npz", "meta.json"]
    assert sorted(p.name for p in root.iterdir()) == files
    with pytest.raises(IndexError, match="out of range"):
        store[3]


def test_meta_is_readable_after_every_episode(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", "test", 8, None, fps=5)
    assert read_meta(tmp_path / "ds").num_episodes == 0  # readable before the first episode
    rng = np.random.default_rng(0)
    for n in range(1, 3):
        writer.add(random_episode(rng, 4, action_dim=None))
        assert len(EpisodeStore(tmp_path / "ds")) == n  # no close() needed: an interrupted run is readable


def test_writer_checks_episodes_against_the_dataset(tmp_path):
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "ds", "test", 8, 2, fps=5) as writer:
        with pytest.raises(EpisodeFormatError, match=r"frames are \(16, 16\), dataset image size is 8"):
            writer.add(random_episode(rng, 4, size=16))
        with pytest.raises(EpisodeFormatError, match="action dim 3, dataset action dim is 2"):
            writer.add(random_episode(rng, 4, action_dim=3))
        with pytest.raises(EpisodeFormatError, match="action dim None, dataset action dim is 2"):
            writer.add(random_episode(rng, 4, action_dim=None))
        with pytest.raises(EpisodeFormatError, match="'actions' must have dtype float32"):
            ep = random_episode(rng, 4)
            ep.actions = ep.actions.astype(np.float64)
            writer.add(ep)
    assert read_meta(tmp_path / "ds").num_episodes == 0
    assert [p.name for p in (tmp_path / "ds").iterdir()] == ["meta.json"]


def test_writer_refuses_non_empty_folder(tmp_path, make_dataset):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="folder is not empty .*overwrite=True"):
        DatasetWriter(other, "test", 8, 2, fps=5)
    with pytest.raises(FileExistsError, match="refusing to overwrite a non-empty folder that has no meta"):
        DatasetWriter(other, "test", 8, 2, fps=5, overwrite=True)
    assert (other / "thesis.tex").read_text() == "precious"
    root = make_dataset("ds", [4, 4])
    with pytest.raises(FileExistsError, match="not empty"):
        DatasetWriter(root, "test", 8, 2, fps=5)
    DatasetWriter(root, "again", 8, 2, fps=5, overwrite=True).close()
    assert [p.name for p in root.iterdir()] == ["meta.json"] and read_meta(root).source == "again"
    (tmp_path / "empty").mkdir()
    DatasetWriter(tmp_path / "empty", "test", 8, 2, fps=5).close()  # an empty folder is fine


def test_read_meta_errors(tmp_path, make_dataset):
    with pytest.raises(EpisodeFormatError, match="nowhere: not a dataset folder .folder does not exist"):
        read_meta(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EpisodeFormatError, match="no meta.json"):
        read_meta(tmp_path / "empty")
    root = make_dataset("ds", [4, 5])
    meta_path = root / "meta.json"
    good = json.loads(meta_path.read_text())

    def check(text: str, message: str) -> None:
        meta_path.write_text(text)
        with pytest.raises(EpisodeFormatError, match=message) as info:
            read_meta(root)
        assert str(root) in str(info.value)

    check("{not json", "meta.json: not valid JSON")
    check("[1, 2]", "top level must be an object")
    missing = {k: v for k, v in good.items() if k not in ("fps", "source")}
    check(json.dumps(missing), r"missing key\(s\) \['source', 'fps'\]")
    check(json.dumps({**good, "image_size": "64"}), "key 'image_size' has the wrong type: '64'")
    check(json.dumps({**good, "action_dim": True}), "key 'action_dim' has the wrong type: True")
    no_length = [{"file": "episode_000000.npz"}]
    check(json.dumps({**good, "episodes": no_length}), r"episodes\[0\] must be an object with 'file'")
    extra_key = [{**good["episodes"][0], "colour": 1}]
    check(json.dumps({**good, "episodes": extra_key}), r"episodes\[0\] has unknown key")
    check(json.dumps({**good, "format_version": 99}), "format_version 99 is newer")
    meta_path.write_text(json.dumps(good))
    (root / "episode_000001.npz").unlink()
    with pytest.raises(EpisodeFormatError, match="lists episode file 'episode_000001.npz', which is missing"):
        read_meta(root)


def test_store_checks_episode_against_meta(make_dataset):
    root = make_dataset("ds", [4, 5])
    meta = json.loads((root / "meta.json").read_text())
    meta["episodes"][1]["length"] = 9
    (root / "meta.json").write_text(json.dumps(meta))
    store = EpisodeStore(root)
    store[0]
    with pytest.raises(EpisodeFormatError, match="episode_000001.npz: has 5 frames but meta.json says 9"):
        store[1]


def test_summarize_numbers(tmp_path):
    rng = np.random.default_rng(0)
    with DatasetWriter(tmp_path / "ds", "test", 8, 2, fps=12.5) as writer:
        for length, task, solved in [(3, "push", True), (4, "push", False), (5, "door", True)]:
            ep = random_episode(rng, length)  # rewards 0..T-1
            ep.success = np.zeros(length, bool) | solved
            writer.add(ep, task=task)
        # no rewards, no success flags: left out of the reward statistics and the success rate
        writer.add(Episode(frames=np.zeros((2, 8, 8, 3), np.uint8), actions=np.zeros((2, 2), np.float32)))
    s = summarize(tmp_path / "ds")
    assert (s["episodes"], s["frames"], s["image_size"], s["action_dim"], s["fps"]) == (4, 14, 8, 2, 12.5)
    assert s["episode_length"] == {"min": 2, "mean": 3.5, "max": 5}
    rewards = np.concatenate([np.arange(3), np.arange(4), np.arange(5)])
    assert s["rewards"] == pytest.approx({"min": 0.0, "max": 4.0, "mean": rewards.mean()})
    assert s["success_rate"] == pytest.approx(2 / 3) and s["success_known"] == 3
    assert s["tasks"] == {"push": 2, "door": 1}
    text = format_summary(s)
    assert "66.7% of 3 episodes" in text and "door (1), push (2)" in text and "dim 2" in text


def test_summarize_action_free_without_rewards(tmp_path):
    with DatasetWriter(tmp_path / "video", "test", 8, None, fps=30) as writer:
        writer.add(Episode(frames=np.zeros((3, 8, 8, 3), np.uint8)))
    s = summarize(tmp_path / "video")
    assert s["action_dim"] is None and s["rewards"] is None and s["success_rate"] is None and s["tasks"] == {}
    text = format_summary(s)
    assert "none (action-free video)" in text
    assert "rewards    unknown" in text and "success    unknown" in text


def test_print_info_text_and_json(make_dataset, capsys):
    root = make_dataset("ds", [4, 6])
    assert print_info(InfoConfig(root))["frames"] == 10
    assert "episodes   2, 10 frames (length min 4 / mean 5 / max 6)" in capsys.readouterr().out
    print_info(InfoConfig(root, json=True))
    assert json.loads(capsys.readouterr().out)["episode_length"] == {"min": 4, "mean": 5.0, "max": 6}


def _damage(root, index, **arrays):
    """Rewrite episode `index` with some fields replaced, bypassing the writer's validation."""
    path = root / f"episode_{index:06d}.npz"
    with np.load(path) as data:
        fields = {name: data[name] for name in data.files} | arrays
    with open(path, "wb") as f:
        np.savez(f, **fields)
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"frames": np.zeros((4, 8, 8, 3), np.float32)}, "'frames' must have dtype uint8"),
        ({"rewards": np.zeros((4, 2), np.float32)}, "'rewards' must have rank 1"),
        ({"actions": np.zeros((3, 2), np.float32)}, "'actions' has 3 rows but 'frames' has T=4"),
        ({"rewards": np.array([0, np.nan, 1, 2], np.float32)},
         "'rewards' has a NaN/inf value at index \\[1\\]"),
        ({"actions": np.full((4, 2), np.inf, np.float32)}, "'actions' has a NaN/inf value"),
        ({"frames": np.zeros((3, 8, 8, 3), np.uint8), "actions": np.zeros((3, 2), np.float32),
          "rewards": np.zeros(3, np.float32), "success": np.zeros(3, bool), "done": np.zeros(3, bool)},
         "has 3 frames but meta.json says 4"),
    ],
)
def test_data_info_validates_every_episode(make_dataset, capsys, damage, message):
    root = make_dataset("ds", [5, 4])
    path = _damage(root, 1, **damage)
    with pytest.raises(EpisodeFormatError, match=f"{path}.*{message}"):
        print_info(InfoConfig(root))
    with pytest.raises(EpisodeFormatError, match=f"{path}.*{message}"):
        print_info(InfoConfig(root, json=True))
    assert capsys.readouterr().out == ""  # no summary of a broken dataset, and no bare NaN as "JSON"


def test_data_info_quick_reads_only_meta_and_rewards(make_dataset, capsys):
    root = make_dataset("ds", [5, 4])
    path = _damage(root, 1, frames=np.zeros((4, 8, 8, 3), np.float32))
    assert print_info(InfoConfig(root, quick=True))["episodes"] == 2  # the frames are not read
    _damage(root, 1, rewards=np.array([0, np.nan, 1, 2], np.float32))
    with pytest.raises(EpisodeFormatError, match=f"{path}.*'rewards' has a NaN/inf value"):
        print_info(InfoConfig(root, quick=True, json=True))
    _damage(root, 1, rewards=np.zeros(3, np.float32))
    with pytest.raises(EpisodeFormatError, match=f"{path}.*'rewards' has 3 rows but 'frames' has T=4"):
        print_info(InfoConfig(root, quick=True))
    capsys.readouterr()


def test_data_info_json_is_valid_json(make_dataset, capsys):
    print_info(InfoConfig(make_dataset("ds", [5, 4]), json=True))
    summary = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert summary["episodes"] == 2


@pytest.mark.parametrize("file", ["../other/episode_000000.npz", "../../other/episode_000000.npz",
                                  "/etc/passwd", "sub/../../x.npz", ""])
def test_meta_paths_that_leave_the_dataset_are_rejected(make_dataset, tmp_path, file):
    root = make_dataset("ds", [4])
    outside = make_dataset("other", [4])
    assert (outside / "episode_000000.npz").is_file()
    meta = json.loads((root / "meta.json").read_text())
    meta["episodes"][0]["file"] = file
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(EpisodeFormatError, match=r"episodes\[0\].file' is .*leaves the dataset folder"):
        EpisodeStore(root)


def test_num_episodes_must_match_the_episode_list(make_dataset):
    root = make_dataset("ds", [4, 5])
    meta = json.loads((root / "meta.json").read_text())
    meta["num_episodes"] = 3
    (root / "meta.json").write_text(json.dumps(meta))
    message = r"meta.json: key 'num_episodes' is 3 but 'episodes' lists 2"
    with pytest.raises(EpisodeFormatError, match=message):
        read_meta(root)
