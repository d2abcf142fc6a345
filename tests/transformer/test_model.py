from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import yaml

from ivideogpt.config import from_dict, to_dict
from ivideogpt.train.optim import build_adamw
from ivideogpt.train.transformer import action_path_norms
from ivideogpt.transformer import PRESETS, KVCache, Transformer, TransformerConfig, symlog, transformer_preset
from ivideogpt.transformer.config import state_dict_mismatch
from ivideogpt.transformer.model import _mixed_inputs
from ivideogpt.transformer.pretrained import load_pretrained

from .helpers import random_batch, random_clip, randomize_zero_init, tiny_config


def _tokens_and_actions(
    model: Transformer, tc: int = 2, tf: int = 3, b: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    clip = random_clip(model.cfg, b, tc, tf)
    tokens = model.layout.build(clip["context_codes"], clip["future_codes"])
    return tokens, model.layout.action_rows(clip["actions"], tc)


def test_forward_shapes_and_logit_positions() -> None:
    model = Transformer(tiny_config(reward_head=True, done_head=True)).eval()
    tokens, _ = _tokens_and_actions(model)
    out = model(tokens)
    b, length = tokens.shape
    assert out.logits.shape == (b, length, model.cfg.padded_vocab_size)
    assert out.reward_pred.shape == out.done_logit.shape == (b, length)
    assert out.hidden.shape == (b, length, model.cfg.n_embd)
    positions = model.layout.target_positions(2, 3)
    torch.testing.assert_close(model(tokens, logit_positions=positions).logits, out.logits[:, positions])


def test_zero_init_actions_change_nothing() -> None:
    model = Transformer(tiny_config(action_dim=3)).eval()
    tokens, actions = _tokens_and_actions(model)
    assert torch.equal(model(tokens).logits, model(tokens, actions).logits)


def test_actions_act_only_through_slots_and_causally() -> None:
    model = Transformer(tiny_config(action_dim=3)).eval()
    randomize_zero_init(model)
    tokens, actions = _tokens_and_actions(model)
    base = model(tokens, actions).logits
    off_slot = actions.clone()
    off_slot[:, 0] = 5.0  # position 0 is a context code: ignored
    assert torch.equal(model(tokens, off_slot).logits, base)
    slot = int(model.layout.slot_positions(2, 3)[1])
    moved = actions.clone()
    moved[:, slot] += 1.0
    changed = model(tokens, moved).logits
    assert torch.equal(changed[:, :slot], base[:, :slot])  # the past does not see a later action
    assert not torch.allclose(changed[:, slot:], base[:, slot:])


@pytest.mark.parametrize("chunks", [[11, 1, 1, 3, 1], [1, 1, 15]])
def test_cached_logits_match_full_forward(chunks: list[int]) -> None:
    model = Transformer(tiny_config(action_dim=3, reward_head=True)).eval()
    randomize_zero_init(model)
    tokens, actions = _tokens_and_actions(model, tc=2, tf=1)  # 6 + 1 + 6 + 5 = 18 tokens; 17 are fed
    assert sum(chunks) == tokens.shape[1] - 1
    full = model(tokens, actions)
    cache = KVCache(model.cfg.n_layer, capacity=tokens.shape[1])
    start = 0
    for n in chunks:
        out = model(tokens[:, start : start + n], actions[:, start : start + n], kv_cache=cache)
        torch.testing.assert_close(out.logits, full.logits[:, start : start + n], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(
            out.reward_pred, full.reward_pred[:, start : start + n], rtol=1e-4, atol=1e-5
        )
        start += n
    assert cache.length == start
    with pytest.raises(ValueError, match="capacity"):
        model(tokens[:, :2], kv_cache=cache)  # 17 cached + 2 > 18


def test_loss_metrics_and_reward_gradient_reaches_head() -> None:
    model = Transformer(tiny_config(action_dim=3, reward_head=True, done_head=True))
    batch = random_batch(model.cfg, 2, 2, 3)
    loss, metrics, out = model.compute_loss(batch)
    assert set(metrics) == {"loss", "ce", "accuracy", "reward_mse", "done_bce"}
    assert all(type(v) is float for v in metrics.values())
    assert out.logits.shape[1] == 3 * model.cfg.tokens_per_future_frame  # target positions only
    zero_head = float(batch.rewards[:, 2:].square().mean())  # the head starts at 0
    assert metrics["reward_mse"] == pytest.approx(zero_head)
    loss.backward()
    assert model.heads.reward.weight.grad.abs().sum() > 0 and model.heads.done.weight.grad.abs().sum() > 0
    model.zero_grad()
    batch.has_rewards = torch.zeros(2, dtype=torch.bool)
    model.compute_loss(batch)[0].backward()
    assert model.heads.reward.weight.grad.abs().sum() == 0  # unlabelled clips do not train the heads


def test_frame_nll_is_the_training_cross_entropy_per_frame() -> None:
    model = Transformer(tiny_config(action_dim=3, action_to="frame")).eval()
    randomize_zero_init(model)
    batch = random_batch(model.cfg, 2, 2, 3)
    nll = model.frame_nll(batch.context_codes, batch.future_codes, batch.actions[:, 2:])
    assert nll.shape == (2, 3) and bool((nll > 0).all())
    ce = model.compute_loss(batch)[1]["ce"]  # mean over every target token
    assert float(nll.sum()) / nll.numel() / model.cfg.tokens_per_future_frame == pytest.approx(ce, rel=1e-5)
    other = model.frame_nll(batch.context_codes, batch.future_codes, batch.actions[:, 2:].flip(0))
    assert not torch.allclose(nll, other)  # the actions are read, frame by frame
    per_code = model.token_nll(batch.context_codes, batch.future_codes, batch.actions[:, 2:])
    assert per_code.shape == (2, 3, model.cfg.tokens_per_future_frame)
    assert torch.allclose(per_code.sum(-1), nll)


def test_moving_weight_weighs_the_codes_of_moving_patches() -> None:
    model = Transformer(tiny_config(action_dim=3)).eval()
    moving = torch.zeros(2, 3, model.cfg.tokens_per_future_frame, dtype=torch.bool)
    moving[0, 1, 2] = moving[1, 0, :2] = True
    batch = random_batch(model.cfg, 2, 2, 3, moving=moving)
    nll = model.token_nll(batch.context_codes, batch.future_codes, batch.actions[:, 2:])
    plain_loss, metrics, _ = model.compute_loss(batch)
    assert float(plain_loss) == pytest.approx(float(nll.mean()), rel=1e-5)
    model.cfg.moving_weight = 4.0
    weight = 1 + 4.0 * moving.float()
    loss, weighted_metrics, _ = model.compute_loss(batch)
    assert float(loss) == pytest.approx(float((weight * nll).sum() / weight.sum()), rel=1e-5)
    assert weighted_metrics["ce"] == pytest.approx(metrics["ce"])  # the logged CE stays unweighted
    batch.moving = None
    with pytest.raises(ValueError, match="moving.npy"):
        model.compute_loss(batch)


def test_learned_positions_start_at_zero_so_a_parent_without_them_computes_the_same() -> None:
    parent = Transformer(tiny_config(action_dim=3))
    child = Transformer(tiny_config(action_dim=3, learned_positions=True))
    missing = child.load_state_dict(parent.state_dict(), strict=False).missing_keys
    assert missing == ["pos_emb.weight"] and child.pos_emb.weight.shape[0] == child.cfg.max_sequence_length
    tokens, actions = _tokens_and_actions(parent)
    torch.testing.assert_close(child.eval()(tokens, actions).logits, parent.eval()(tokens, actions).logits)


def test_action_contrast_loss_prefers_own_actions_and_ignores_constant_ones() -> None:
    plain = Transformer(tiny_config(action_dim=3, action_to="frame"))
    randomize_zero_init(plain)
    model = Transformer(tiny_config(action_dim=3, action_to="frame", action_contrast_weight=0.5))
    model.load_state_dict(plain.state_dict())
    batch = random_batch(model.cfg, 2, 2, 3)
    loss, metrics, _ = model.compute_loss(batch)
    base, base_metrics, _ = plain.compute_loss(batch)
    assert {"action_contrast", "action_margin"} <= set(metrics) and "action_contrast" not in base_metrics
    assert loss.item() == pytest.approx(base.item() + 0.5 * metrics["action_contrast"], rel=1e-5)
    assert metrics["action_margin"] != 0.0  # reversed actions change the likelihood
    # a constant action reversed is itself: softplus(0) and no gradient from the contrast at all
    batch.actions[:] = batch.actions[:, :1]
    _, metrics, _ = model.compute_loss(batch)
    assert metrics["action_contrast"] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-5)
    model.zero_grad()
    tokens = model.layout.build(batch.context_codes, batch.future_codes)
    at = model.layout.target_positions(2, 3)
    rows = model.layout.action_rows(batch.actions, 2)
    own = F.cross_entropy(model(tokens, rows, logit_positions=at).logits.transpose(1, 2),
                          tokens[:, at + 1], reduction="none").view(2, 3, -1)
    model._action_contrast(batch, tokens, at, tokens[:, at + 1], own)[0].backward()
    assert max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None) < 1e-6


def test_symlog_reward_targets() -> None:
    model = Transformer(tiny_config(reward_head=True, reward_symlog=True))
    batch = random_batch(model.cfg, 2, 1, 2)
    batch.rewards = batch.rewards * 100
    _, metrics, _ = model.compute_loss(batch)
    assert metrics["reward_mse"] == pytest.approx(float(symlog(batch.rewards[:, 1:]).square().mean()))


def test_action_dropout_drops_the_actions_of_a_random_share_of_clips_in_training_only() -> None:
    model = Transformer(tiny_config(action_dim=3, action_dropout=0.5))
    randomize_zero_init(model)
    plain = Transformer(tiny_config(action_dim=3))  # the same weights, no action dropout
    plain.load_state_dict(model.state_dict())
    batch = random_batch(model.cfg, 8, 2, 2)
    torch.manual_seed(0)
    kept = torch.rand(8) >= 0.5
    assert 0 < int(kept.sum()) < 8  # the seed drops some clips and keeps others
    torch.manual_seed(0)
    dropped = model.train().compute_loss(batch)[0]
    expected = plain.train().compute_loss(random_batch(model.cfg, 8, 2, 2, has_actions=kept))[0]
    assert torch.equal(dropped, expected) and not torch.equal(dropped, plain.compute_loss(batch)[0])
    # evaluation sees every clip's actions
    assert torch.equal(model.eval().compute_loss(batch)[0], plain.eval().compute_loss(batch)[0])
    with pytest.raises(ValueError, match="action_dropout"):
        tiny_config(action_dim=3, action_dropout=1.0)


def test_code_noise_corrupts_the_future_codes_read_never_the_targets_nor_the_context() -> None:
    model = Transformer(tiny_config(action_dim=3, code_noise=1.0))
    randomize_zero_init(model)
    clean = Transformer(tiny_config(action_dim=3))  # the same weights, no noise
    clean.load_state_dict(model.state_dict())
    batch = random_batch(model.cfg, 64, 2, 3)
    tokens = model.layout.build(batch.context_codes, batch.future_codes)
    code_at = model.layout.target_positions(2, 3) + 1
    vc, vf = model.cfg.context_vocab_size, model.cfg.future_vocab_size

    def noised_inputs() -> torch.Tensor:  # what compute_loss draws, in its order
        return _mixed_inputs(tokens, code_at, torch.randint(vc, vc + vf, (64, code_at.numel())), 1.0)

    noised = noised_inputs()
    changed = noised != tokens
    outside = torch.ones(tokens.shape[1], dtype=torch.bool)
    outside[code_at] = False
    assert not changed[:, outside].any()  # context codes, SEP and SLOT tokens are never touched
    assert bool(((noised[changed] >= vc) & (noised[changed] < vc + vf)).all())
    rates = changed[:, code_at].float().mean(1)  # each clip its own level, u ~ U(0, 1)
    assert float(rates.min()) < 0.2 and float(rates.max()) > 0.8
    # the loss is on the clean codes: with the noised inputs and clean targets, by hand
    torch.manual_seed(0)
    loss = model.train().compute_loss(batch)[0]
    torch.manual_seed(0)
    noised = noised_inputs()
    at = code_at - 1
    logits = clean.train()(noised, model.layout.action_rows(batch.actions, 2), logit_positions=at).logits
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits.transpose(1, 2), tokens[:, code_at])),
                                        rel=1e-5)
    assert not torch.equal(loss, clean.compute_loss(batch)[0])
    # evaluation reads the codes as they are
    assert torch.equal(model.eval().compute_loss(batch)[0], clean.eval().compute_loss(batch)[0])
    with pytest.raises(ValueError, match="code_noise"):
        tiny_config(code_noise=1.5)


def test_self_feed_reads_the_models_own_greedy_codes_and_still_predicts_the_true_ones() -> None:
    model = Transformer(tiny_config(action_dim=3, self_feed=1.0))
    randomize_zero_init(model)
    clean = Transformer(tiny_config(action_dim=3))
    clean.load_state_dict(model.state_dict())
    batch = random_batch(model.cfg, 64, 2, 3)
    tokens = model.layout.build(batch.context_codes, batch.future_codes)
    at = model.layout.target_positions(2, 3)
    rows = model.layout.action_rows(batch.actions, 2)
    vc, vf = model.cfg.context_vocab_size, model.cfg.future_vocab_size
    own = clean.eval()(tokens, rows, logit_positions=at).logits[..., vc : vc + vf].argmax(-1) + vc
    torch.manual_seed(0)
    fed = model.train()._self_fed_inputs(tokens, rows, at)
    changed = fed != tokens
    outside = torch.ones(tokens.shape[1], dtype=torch.bool)
    outside[at + 1] = False
    assert not changed[:, outside].any()  # only future codes are read differently
    assert torch.equal(fed[:, at + 1][changed[:, at + 1]], own[changed[:, at + 1]])  # the model's own choices
    hit = (fed[:, at + 1] == own).float().mean(1)  # each clip its own share of them, u ~ U(0, 1)
    assert float(hit.min()) < 0.5 and float(hit.max()) > 0.9
    # trained on its own codes, scored against the true ones; evaluation reads the truth
    torch.manual_seed(0)
    loss = model.compute_loss(batch)[0]
    torch.manual_seed(0)
    fed = model._self_fed_inputs(tokens, rows, at)
    logits = clean.train()(fed, rows, logit_positions=at).logits
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits.transpose(1, 2), tokens[:, at + 1])),
                                        rel=1e-5)
    assert torch.equal(model.eval().compute_loss(batch)[0], clean.eval().compute_loss(batch)[0])
    with pytest.raises(ValueError, match="self_feed"):
        tiny_config(self_feed=-0.1)


def test_action_free_clips_in_a_batch_get_no_action() -> None:
    model = Transformer(tiny_config(action_dim=3)).eval()
    randomize_zero_init(model)
    batch = random_batch(model.cfg, 2, 2, 2)
    no_actions = torch.zeros(2, dtype=torch.bool)
    masked = model.compute_loss(random_batch(model.cfg, 2, 2, 2, has_actions=no_actions))[0]
    free = Transformer(tiny_config()).eval()  # the same weights without an action layer
    load_pretrained(free, {k: v for k, v in model.state_dict().items() if not k.startswith("action_proj.")})
    unlabelled = random_batch(free.cfg, 2, 2, 2, actions=torch.zeros(2, 4, 0))
    assert torch.equal(masked, free.compute_loss(unlabelled)[0])
    assert not torch.equal(masked, model.compute_loss(batch)[0])


def test_action_free_checkpoint_loads_into_action_model() -> None:
    parent = Transformer(tiny_config()).eval()
    child = Transformer(tiny_config(action_dim=3, reward_head=True, done_head=True)).eval()
    added = load_pretrained(child, parent.state_dict())
    assert added == sorted(
        [
            "action_proj.weight",
            "heads.reward.weight",
            "heads.reward.bias",
            "heads.done.weight",
            "heads.done.bias",
        ]
    )
    tokens, actions = _tokens_and_actions(child)
    assert torch.equal(child(tokens, actions).logits, parent(tokens).logits)  # zero-init action layer
    with pytest.raises(ValueError, match="keys not in this model"):
        load_pretrained(parent, child.state_dict())
    wider = Transformer(tiny_config(future_vocab_size=64))
    with pytest.raises(ValueError, match="shape mismatch"):
        load_pretrained(wider, parent.state_dict())


def test_loss_decreases_when_overfitting_a_batch() -> None:
    torch.manual_seed(0)
    model = Transformer(tiny_config(action_dim=3, reward_head=True))
    batch = random_batch(model.cfg, 4, 1, 3)
    opt = build_adamw(model, 3e-3, 0.0, (0.9, 0.95), torch.device("cpu"))
    first = None
    for _ in range(80):
        loss, metrics, _ = model.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else metrics
    assert metrics["ce"] < 0.3 * first["ce"] and metrics["reward_mse"] < 0.3 * first["reward_mse"]
    assert metrics["accuracy"] > 0.9


def test_bad_inputs_give_clear_errors() -> None:
    model = Transformer(tiny_config(action_dim=3))
    clip = random_clip(model.cfg, 2, 1, 2)
    with pytest.raises(ValueError, match=r"actions must be \(B, Tc \+ Tf, A\) = \(2, 3, 3\)"):
        model.compute_loss(random_batch(model.cfg, 2, 1, 2, actions=clip["actions"][..., :2]))
    with pytest.raises(ValueError, match="future_codes must lie in"):
        model.compute_loss(random_batch(model.cfg, 2, 1, 2, future_codes=clip["future_codes"] - 1))
    with pytest.raises(ValueError, match="rewards must be"):
        model.compute_loss(random_batch(model.cfg, 2, 1, 2, rewards=clip["rewards"][:, 1:]))
    with pytest.raises(ValueError, match="at least one frame"):
        model.compute_loss(random_batch(model.cfg, 2, 1, 2, future_codes=clip["future_codes"][:, :0]))
    tokens = model.layout.build(clip["context_codes"], clip["future_codes"])
    with pytest.raises(ValueError, match="int64"):
        model(tokens.int())
    action_free = Transformer(tiny_config())
    with pytest.raises(ValueError, match="action-free"):
        action_free(tokens, torch.zeros(*tokens.shape, 3))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("n_embd", 33, "multiple of n_head"),
        ("n_head", 32, "must be even"),
        ("attn_dropout", 1.0, "attn_dropout"),
        ("action_dim", -1, "action_dim"),
        ("tokens_per_future_frame", 0, "tokens_per_future_frame"),
    ],
)
def test_config_validation_names_the_field(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_config(**{field: value})


def test_preset_sizes_match_the_paper() -> None:
    sizes = {}
    for name in ("138m", "436m"):
        with torch.device("meta"):  # no memory, no init cost
            sizes[name] = Transformer(transformer_preset(name)).num_params()
    assert 138e6 < sizes["138m"] < 139e6 and 436e6 < sizes["436m"] < 437e6
    with pytest.raises(ValueError, match="unknown transformer preset"):
        transformer_preset("huge")
    assert TransformerConfig(n_embd=256, n_head=4).hidden_size == 704  # 8/3 * 256 rounded up to 32


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_yaml(name: str) -> None:
    cfg = transformer_preset(name, action_dim=4, reward_head=True)
    assert from_dict(TransformerConfig, yaml.safe_load(yaml.safe_dump(to_dict(cfg)))) == cfg


def test_flops_estimate() -> None:
    model = Transformer(tiny_config())
    cfg = model.cfg
    grow = model.estimate_flops_per_token(200) - model.estimate_flops_per_token(100)
    assert grow == 12 * cfg.n_layer * cfg.n_embd * 100
    assert model.estimate_flops_per_token(0) == 6 * model.num_params(exclude_embedding=True) - 6 * sum(
        p.numel() for n, p in model.named_parameters() if "norm" in n
    )


def test_action_to_frame_adds_the_action_to_every_token_of_its_frame() -> None:
    layout_rows = {}
    for action_to in ("slot", "frame"):
        model = Transformer(tiny_config(action_dim=2, action_to=action_to))
        randomize_zero_init(model)
        actions = torch.zeros(1, 3, 2)
        actions[0, 2] = 1.0  # the action producing future frame 1 (context of 1 frame: rows 1, 2)
        layout_rows[action_to] = model.layout.action_rows(actions, 1)[0, :, 0]  # (L,)
    n1 = model.layout.frame_length  # SLOT + codes
    future = layout_rows["frame"][model.layout.context_length(1):]
    assert layout_rows["slot"].count_nonzero() == 1  # frame 1's SLOT
    assert future[n1:].tolist() == [1.0] * n1 and future[:n1].count_nonzero() == 0
    with pytest.raises(ValueError, match="action_to"):
        tiny_config(action_dim=2, action_to="codes")


@pytest.mark.parametrize("action_to", ["slot", "frame"])
def test_action_modulation_starts_as_its_parent_and_reads_only_action_rows(action_to: str) -> None:
    model = Transformer(tiny_config(action_dim=3, action_to=action_to, action_modulation=True)).eval()
    parent = Transformer(tiny_config(action_dim=3, action_to=action_to)).eval()
    randomize_zero_init(parent)
    added = load_pretrained(model, parent.state_dict())
    assert added == [f"blocks.{i}.action_mod.weight" for i in range(model.cfg.n_layer)]
    batch = random_batch(model.cfg, 2, 2, 3)
    args = (batch.context_codes, batch.future_codes, batch.actions[:, 2:])
    torch.testing.assert_close(model.token_nll(*args), parent.token_nll(*args))  # zero init: the parent
    randomize_zero_init(model)
    assert not torch.allclose(model.token_nll(*args), parent.token_nll(*args))  # the modulation is read
    # zero actions (an action-free clip) leave the block as it was, trained weights or not
    zeros = torch.zeros_like(args[2])
    torch.testing.assert_close(model.token_nll(*args[:2], zeros), parent.token_nll(*args[:2], zeros))
    loss, _, _ = model.compute_loss(batch)
    loss.backward()
    assert all(float(block.action_mod.weight.grad.norm()) > 0 for block in model.blocks)
    assert state_dict_mismatch(parent.cfg, model.state_dict()) == [
        "action_modulation: True in the weights, False in the config"]
    assert Transformer(tiny_config(action_modulation=True)).blocks[0].action_mod is None  # action-free


def test_action_sum_feeds_the_running_sum_and_starts_as_its_parent() -> None:
    model = Transformer(tiny_config(action_dim=3, action_to="frame", action_sum=True)).eval()
    actions = torch.randn(2, 4, 3)
    inputs = model.frame_action_inputs(actions, before=torch.ones(2, 3))
    assert inputs.shape == (2, 4, 6) and torch.equal(inputs[..., :3], actions)
    torch.testing.assert_close(inputs[..., 3:], actions.cumsum(1) + 1)  # the sum since the context
    parent = Transformer(tiny_config(action_dim=3, action_to="frame")).eval()
    randomize_zero_init(parent)
    assert load_pretrained(model, parent.state_dict()) == ["action_sum_proj.weight"]
    batch = random_batch(model.cfg, 2, 2, 3)
    args = (batch.context_codes, batch.future_codes, batch.actions[:, 2:])
    torch.testing.assert_close(model.token_nll(*args), parent.token_nll(*args))  # zero init: the parent
    randomize_zero_init(model)
    assert not torch.allclose(model.token_nll(*args), parent.token_nll(*args))  # the sum is read
    loss, metrics, _ = model.compute_loss(batch)
    assert torch.isfinite(loss) and metrics["ce"] > 0
    assert Transformer(tiny_config(action_sum=True)).action_sum_proj is None  # action-free: nothing to sum


def test_action_path_norms_cover_every_action_path() -> None:
    """The training log's action-path norms: the input projection, and every block's modulation as one."""
    model = Transformer(tiny_config(action_dim=3, action_to="frame", action_modulation=True))
    randomize_zero_init(model)
    assert action_path_norms(model) == {}  # no gradient yet: nothing to report
    model.compute_loss(random_batch(model.cfg, 2, 2, 3))[0].backward()
    norms = action_path_norms(model)
    mods = [block.action_mod.weight for block in model.blocks]
    expected = torch.stack([w.detach().norm() for w in mods]).norm()
    assert norms["action_mod_weight_norm"] == pytest.approx(float(expected), rel=1e-5)
    assert norms["action_mod_grad_norm"] > 0 and norms["action_grad_norm"] > 0
    assert "action_sum_weight_norm" not in norms  # no such path in this model


def test_grow_depth_inserts_identity_blocks(load_script) -> None:
    grow = load_script("grow_depth", folder="scripts").grow
    parent = Transformer(tiny_config(action_dim=3, action_to="frame", reward_head=True)).eval()
    randomize_zero_init(parent)
    grown = grow(parent)
    assert grown.cfg.n_layer == 2 * parent.cfg.n_layer
    batch = random_batch(parent.cfg, 2, 2, 3)
    args = (batch.context_codes, batch.future_codes, batch.actions[:, 2:])
    torch.testing.assert_close(grown.token_nll(*args), parent.token_nll(*args))  # the parent's predictions
    torch.testing.assert_close(grown.blocks[2].attn.qkv.weight, parent.blocks[1].attn.qkv.weight)
    assert float(grown.blocks[1].attn.qkv.weight.detach().norm()) > 0  # new: random inputs, zero outputs
    grown.compute_loss(batch)[0].backward()
    assert float(grown.blocks[1].mlp.down.weight.grad.norm()) > 0  # and they learn
