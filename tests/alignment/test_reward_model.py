"""Graders for the reward model: the Bradley-Terry loss (hand-computed, against a plain loop, stable at large
margins), reading the reward at the last token for our model and an HF one, training raises held-out
pairwise accuracy, saving and loading, and typed preference files."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from tests.alignment.tiny import CharTokenizer, hf_char_tokenizer, tiny_hf_model

pytestmark = pytest.mark.extension


def test_bradley_terry_loss_hand_computed(adapters):
    loss, metrics = adapters.run_bradley_terry_loss(torch.tensor([1.0]), torch.tensor([-0.5]))
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.5))), rel=1e-6)  # 0.2014
    assert loss.item() == pytest.approx(0.2014, abs=1e-4)
    assert float(metrics["accuracy"]) == 1.0 and float(metrics["margin"]) == pytest.approx(1.5)


def test_bradley_terry_loss_matches_a_plain_loop_and_its_gradient(adapters):
    generator = torch.Generator().manual_seed(0)
    chosen = (torch.randn(17, generator=generator) * 3).requires_grad_(True)
    rejected = (torch.randn(17, generator=generator) * 3).requires_grad_(True)
    loss, metrics = adapters.run_bradley_terry_loss(chosen, rejected)
    pairs = list(zip(chosen.tolist(), rejected.tolist()))
    plain = sum(math.log1p(math.exp(-(w - lose))) for w, lose in pairs) / len(pairs)
    assert loss.item() == pytest.approx(plain, rel=1e-5)
    assert float(metrics["accuracy"]) == pytest.approx(sum(w > lose for w, lose in pairs) / len(pairs))
    assert adapters.run_bradley_terry_loss_reference(*zip(*pairs)) == pytest.approx(loss.item(), rel=1e-5)
    loss.backward()
    # d/dr_w of -log sigmoid(r_w - r_l) / n = -sigmoid(r_l - r_w) / n, and the opposite for r_l
    expected = torch.tensor([-1 / (1 + math.exp(w - lose)) / len(pairs) for w, lose in pairs])
    torch.testing.assert_close(chosen.grad, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(rejected.grad, -expected, rtol=1e-5, atol=1e-7)


def test_bradley_terry_loss_is_stable_at_large_margins(adapters):
    loss, _ = adapters.run_bradley_terry_loss(torch.tensor([-100.0, 100.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx(50.0, rel=1e-5)  # (100 + ~0) / 2, not inf
    tie, metrics = adapters.run_bradley_terry_loss(torch.zeros(4), torch.zeros(4))
    assert (
        tie.item() == pytest.approx(math.log(2)) and float(metrics["accuracy"]) == 0.5
    )  # a tie: a coin flip


@pytest.mark.parametrize("kind", ["ours", "hf"])
def test_score_reads_the_last_token_whatever_the_padding(adapters, kind):
    char = CharTokenizer()
    if kind == "ours":
        tok, policy = char, adapters.get_transformer_lm(char.vocab_size, 64, 32, 2, 4, 64, seed=1)
    else:
        tok, policy = hf_char_tokenizer(), tiny_hf_model(char.vocab_size, seed=1)
    reward_model = adapters.get_reward_model(policy)
    with torch.no_grad():  # give the zero-initialised head some weights
        for p in reward_model.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    prompts, responses = ["what is 2+3?", "hi"], [" it is 5.", " there, friend, how are you"]
    with torch.no_grad():
        batched = adapters.run_score(reward_model, tok, prompts, responses)
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ids = torch.tensor([char.encode(p + r) + [char.eos_id]])  # one unpadded row, EOS last
            alone = reward_model(ids)[0, -1]
            torch.testing.assert_close(batched[i], alone.float(), rtol=1e-4, atol=1e-5)
    assert batched.shape == (2,)


def test_reward_model_does_not_change_the_policy(adapters):
    tok = CharTokenizer()
    policy = adapters.get_transformer_lm(tok.vocab_size, 32, 32, 1, 2, 64, seed=2)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    reward_model = adapters.get_reward_model(policy)
    adapters.run_train_reward_model(reward_model, tok, [("a", "b", "c")], steps=3, batch_size=2)
    assert all(torch.equal(before[k], v) for k, v in policy.state_dict().items())


def _pairs(numbers):
    return [(f"{a}+{b}=", str(a + b), str(a + b + 1)) for a, b in numbers]


def _copy_pairs(count: int, seed: int):
    """Preferred: the response repeats the prompt's letter; rejected: another letter. A reward model
    must compare the response with the prompt to rank these."""
    rng, letters = random.Random(seed), "abcdefghijklmnop"
    pairs = []
    for _ in range(count):
        x = rng.choice(letters)
        pairs.append((f"{x}=", x, rng.choice([c for c in letters if c != x])))
    return pairs


@pytest.mark.slow
def test_training_raises_heldout_pairwise_accuracy(adapters):
    tok = CharTokenizer()
    policy = adapters.get_transformer_lm(tok.vocab_size, 16, 32, 1, 2, 64, seed=3)
    reward_model = adapters.get_reward_model(policy)
    train, heldout = _copy_pairs(300, seed=0), _copy_pairs(60, seed=1)
    assert adapters.run_pairwise_accuracy(reward_model, tok, heldout) == 0.5  # untrained: all ties
    adapters.run_train_reward_model(
        reward_model,
        tok,
        train,
        steps=80,
        batch_size=32,
        learning_rate=3e-3,
        min_learning_rate=3e-4,
        warmup_steps=10,
    )
    assert adapters.run_pairwise_accuracy(reward_model, tok, heldout) >= 0.9
    # the same pairs with the sides swapped are ranked the other way (it learned the pairs, not a position)
    swapped = [(p, r, c) for p, c, r in heldout]
    assert adapters.run_pairwise_accuracy(reward_model, tok, swapped) <= 0.1


@pytest.mark.parametrize("kind", ["ours", "hf"])
def test_save_and_load_round_trip(adapters, tmp_path, kind):
    char = CharTokenizer()
    if kind == "ours":
        tok, policy, path = (
            char,
            adapters.get_transformer_lm(char.vocab_size, 32, 32, 1, 2, 64),
            tmp_path / "rm.pt",
        )
    else:
        tok, policy, path = hf_char_tokenizer(), tiny_hf_model(char.vocab_size), tmp_path / "rm"
    reward_model = adapters.get_reward_model(policy)
    adapters.run_train_reward_model(reward_model, tok, _pairs([(1, 2), (3, 4)]), steps=3, batch_size=2)
    prompts, responses = ["1+2=", "3+4="], ["3", "8"]
    with torch.no_grad():
        expected = adapters.run_score(reward_model, tok, prompts, responses)
        loaded, loaded_tok = adapters.run_save_load_reward_model(reward_model, tok, path)
        got = adapters.run_score(loaded, loaded_tok if kind == "hf" else tok, prompts, responses)
    assert not torch.equal(expected, torch.zeros(2))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_preference_jsonl_is_type_checked(adapters, tmp_path):
    path = tmp_path / "prefs.jsonl"
    good = {"prompt": "1+1=", "chosen": "2", "rejected": "3"}
    path.write_text(json.dumps(good) + "\n")
    assert adapters.run_read_preference_jsonl(path) == [("1+1=", "2", "3")]
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "rejected": 3}) + "\n")
    with pytest.raises(ValueError) as error:
        adapters.run_read_preference_jsonl(path)
    assert str(error.value).startswith(f"{path}:2:") and "'rejected'" in str(error.value)


def test_a_reward_model_folder_with_pickled_weights_is_refused_not_unpickled(adapters, tmp_path):
    """The backbone of a saved HF reward model must be safetensors: a ``pytorch_model.bin`` in its
    place is an error naming the folder, and the pickle never runs."""
    char = CharTokenizer()
    folder = tmp_path / "rm"
    adapters.run_save_load_reward_model(
        adapters.get_reward_model(tiny_hf_model(char.vocab_size)), hf_char_tokenizer(), folder
    )
    for weights in folder.glob("model*.safetensors"):  # the backbone's; scalar_head.safetensors stays
        weights.unlink()
    marker = tmp_path / "code-ran"
    (folder / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(OSError) as error:
        adapters.run_load_reward_model(folder)
    assert not marker.exists(), "the pickle ran"
    assert str(folder) in str(error.value) and "\n" not in str(error.value), str(error.value)
