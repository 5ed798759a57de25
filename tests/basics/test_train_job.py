"""Graders for the training job's hardening: bad values refused at the door, token arrays and memory
checked before allocating, divergence never saved, checkpoint-folder hygiene, metrics without
duplicates after a resume, a content-keyed corpus cache, plain text split into documents, steps free
of host syncs between log steps, and the loss inside the compiled region."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.basics.test_train import TINY, settings

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/


def config(adapters, tmp_path, **overrides):
    return adapters.make_train_config(adapters.get_model_config(**TINY), **settings(tmp_path, **overrides))


# ---- validation at the door ----


@pytest.mark.parametrize(
    "bad",
    [
        dict(learning_rate=math.nan),
        dict(learning_rate=math.inf, min_learning_rate=0.0),
        dict(weight_decay=math.nan),
        dict(grad_clip=math.nan),
        dict(adam_eps=0.0),
        dict(beta2=1.0),
        dict(decay_fraction=math.nan),
        dict(eval_batches=0),
        dict(seed=-1),
    ],
)
def test_train_config_refuses_non_finite_and_out_of_range_values(adapters, tmp_path, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name.split("_")[0]):
        config(adapters, tmp_path, **bad)


@pytest.mark.parametrize("bad", [dict(rope_theta=math.nan), dict(norm_eps=math.nan), dict(rope_theta=-1.0)])
def test_model_config_refuses_non_finite_values(adapters, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        adapters.get_model_config(**TINY, **bad)


@pytest.mark.parametrize(
    "bad",
    [
        dict(temperature=math.nan),
        dict(temperature=-0.5),
        dict(top_p=0.0),
        dict(top_p=math.nan),
        dict(max_new_tokens=-1),
    ],
)
def test_sample_config_refuses_bad_values(adapters, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        adapters.make_sample_config(**bad)


# ---- data and memory, checked before anything is allocated or written ----


@pytest.mark.parametrize("split", ["train_data", "val_data"])
@pytest.mark.parametrize("bad_id", [-1, TINY["vocab_size"]])
def test_out_of_range_token_ids_are_refused_in_either_split(adapters, tmp_path, split, bad_id):
    tokens = np.arange(1000, dtype=np.int32) % TINY["vocab_size"]
    tokens[500] = bad_id
    path = tmp_path / "bad.npy"
    np.save(path, tokens)
    cfg = config(adapters, tmp_path, **{split: str(path)})
    with pytest.raises(ValueError, match=f"{bad_id}.*vocab_size"):
        adapters.run_train(cfg)
    assert not Path(cfg.out_dir).exists(), "a refused run must leave nothing behind"


def test_a_model_larger_than_memory_is_refused_before_allocation(adapters, tmp_path):
    huge = adapters.get_model_config(**{**TINY, "vocab_size": 2_000_000_000})  # ~2 TB of AdamW state
    tokens = tmp_path / "t.npy"
    np.save(tokens, np.arange(1000, dtype=np.int64))
    cfg = adapters.make_train_config(huge, **settings(tmp_path, train_data=str(tokens), val_data=""))
    with pytest.raises(ValueError, match="GB"):
        adapters.run_train(cfg)


# ---- divergence: stop, name the last good checkpoint, write nothing non-finite ----


def _all_finite(checkpoint: Path) -> bool:
    payload = torch.load(checkpoint, weights_only=True)
    return all(torch.isfinite(t).all() for t in payload["model"].values())


def test_a_non_finite_gradient_stops_the_run_without_saving_it(adapters, tmp_path):
    """The loss stays finite; only the gradient of step 4 is infinite (e.g. a bf16 overflow)."""

    class InfiniteGradientAtStep4(adapters.training_strategy_class()):
        steps = 0

        def forward_backward(self, loss_fn, micro_batches):
            loss = super().forward_backward(loss_fn, micro_batches)
            self.steps += 1
            if self.steps == 4:
                next(p for p in self.model.parameters()).grad.fill_(math.inf)
            return loss

        def wrap_model(self, model):
            self.model = model
            return model

    cfg = config(adapters, tmp_path, max_steps=10, checkpoint_interval=2, log_interval=5, grad_clip=0.0)
    with pytest.raises(adapters.training_diverged_error(), match=r"step 4\b.*checkpoint_0+2\.pt"):
        adapters.run_train_job(cfg, strategy=InfiniteGradientAtStep4())
    checkpoints = sorted((Path(cfg.out_dir) / "checkpoints").glob("checkpoint_*.pt"))
    assert [p.name for p in checkpoints][-1] == "checkpoint_00000002.pt", "no checkpoint after the bad step"
    assert all(_all_finite(p) for p in checkpoints)
    metrics = Path(cfg.out_dir, "metrics.jsonl").read_text()
    assert "NaN" not in metrics and "Infinity" not in metrics


# ---- checkpoint folder hygiene ----


def test_stray_files_in_the_checkpoint_folder_are_left_alone_and_partial_saves_removed(adapters, tmp_path):
    cfg = config(adapters, tmp_path, max_steps=12, checkpoint_interval=4, keep_checkpoints=1)
    folder = Path(cfg.out_dir) / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "checkpoint_best.pt").write_bytes(b"not ours")
    (folder / "notes.txt").write_text("keep me")
    orphan = folder / ".checkpoint_00000004.pt.x1y2z3.tmp"
    orphan.write_bytes(b"\0" * 1000)  # what a save killed half-way leaves behind
    result = adapters.run_train(cfg)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["checkpoint_00000012.pt", "checkpoint_best.pt", "notes.txt"]
    assert Path(result.checkpoint).name == "checkpoint_00000012.pt"


def test_a_corrupt_latest_checkpoint_falls_back_with_a_warning(adapters, tmp_path):
    common = dict(max_steps=30, checkpoint_interval=10, keep_checkpoints=3, log_interval=1)
    first = config(adapters, tmp_path, stop_after=20, **common)
    adapters.run_train(first)
    latest = Path(first.out_dir) / "checkpoints" / "checkpoint_00000020.pt"
    latest.write_bytes(latest.read_bytes()[:5000])  # truncated, as by a full disk
    records = []
    resumed = adapters.run_train_job(
        config(adapters, tmp_path, resume=True, **common), callback=records.append
    )
    warnings = [r["warning"] for r in records if "warning" in r]
    assert len(warnings) == 1 and "checkpoint_00000020.pt" in warnings[0]
    assert resumed.steps == 30
    trained = [r["step"] for r in records if "loss" in r]
    assert trained[0] == 11, "resumed from step 10, the newest readable checkpoint"


def test_resume_needs_a_checkpoint_unless_if_exists(adapters, tmp_path):
    with pytest.raises(FileNotFoundError, match="resume"):
        adapters.run_train(config(adapters, tmp_path, resume=True, out_dir=str(tmp_path / "typo")))
    result = adapters.run_train(
        config(adapters, tmp_path, max_steps=5, resume_if_exists=True, out_dir=str(tmp_path / "new"))
    )
    assert result.steps == 5


def test_a_fresh_run_does_not_overwrite_an_existing_one(adapters, tmp_path):
    adapters.run_train(config(adapters, tmp_path, max_steps=5))
    with pytest.raises(ValueError, match="already holds"):
        adapters.run_train(config(adapters, tmp_path, max_steps=5))


def test_metrics_continue_without_duplicate_steps_after_a_resume(adapters, tmp_path):
    # Run to step 20 logging every step, then lose the step-20 checkpoint, as when a run is killed
    # after logging steps 11..20 but before saving them: the resume trains 11..20 again.
    common = dict(max_steps=30, checkpoint_interval=10, keep_checkpoints=3, log_interval=1)
    adapters.run_train(config(adapters, tmp_path, stop_after=20, **common))
    out = tmp_path / "run"
    (out / "checkpoints" / "checkpoint_00000020.pt").unlink()
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 21, "lo')  # a line cut short by the kill
    adapters.run_train(config(adapters, tmp_path, resume=True, **common))
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 31))
    assert [r["step"] for r in records if "val_loss" in r] == [20, 30]


# ---- the corpus: content-keyed cache, plain text as documents ----


def test_an_edited_text_file_is_rebuilt_not_served_from_the_cache(adapters, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("\n\n".join(f"old paragraph {i}" for i in range(20)))
    first = adapters.run_resolve_text_corpus([notes], tmp_path / "cache")
    assert not first.notes
    again = adapters.run_resolve_text_corpus([notes], tmp_path / "cache")
    assert not again.notes and again.train == first.train
    notes.write_text("\n\n".join(f"new paragraph {i}" for i in range(25)))
    changed = adapters.run_resolve_text_corpus([notes], tmp_path / "cache")
    assert changed.notes and "notes.txt" in changed.notes[0]
    text = changed.train.read_text() + changed.validation.read_text()
    assert "new paragraph" in text and "old paragraph" not in text


def test_plain_text_without_separators_is_split_into_paragraphs(adapters, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("".join(f"Paragraph {i} has\ntwo lines.\n\n" for i in range(40)))
    corpus = adapters.run_resolve_text_corpus([notes], tmp_path / "cache")
    documents = corpus.train.read_text().split("<|endoftext|>") + corpus.validation.read_text().split(
        "<|endoftext|>"
    )
    assert sorted(documents) == sorted(f"Paragraph {i} has\ntwo lines." for i in range(40))
    single = tmp_path / "single.txt"
    single.write_text("just one paragraph")
    with pytest.raises(ValueError, match="blank line"):
        adapters.run_resolve_text_corpus([single], tmp_path / "cache")


# ---- GPU-friendly steps, checked on the CPU ----

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "cpu")


def _count_host_reads(monkeypatch) -> dict[str, int]:
    """Count calls of the tensor methods that make the host wait for a GPU (on the CPU they are cheap,
    but the count is the same)."""
    counts = dict.fromkeys(HOST_READS, 0)
    for name in HOST_READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


def test_steps_between_log_steps_never_read_the_device(adapters, tmp_path, monkeypatch):
    """Host reads must not grow with the number of steps between two log points: a run of 3 steps and
    one of 12 steps, each with one log, one evaluation and one checkpoint, read the device equally often."""
    reads = {}
    for steps in (3, 12):
        counts = _count_host_reads(monkeypatch)
        cfg = config(
            adapters, tmp_path, max_steps=steps, log_interval=steps, eval_interval=steps,
            checkpoint_interval=steps, warmup_steps=1, out_dir=str(tmp_path / f"run{steps}"),
        )  # fmt: skip
        adapters.run_train(cfg)
        reads[steps] = dict(counts)
        monkeypatch.undo()
    assert reads[12] == reads[3], f"host reads per run: {reads}"


def test_the_compiled_region_ends_in_the_scalar_loss(adapters, tmp_path, monkeypatch):
    """With compile=True the graph torch.compile captures returns the loss (a scalar), not the
    (batch, seq, vocab) logits: the fp32 upcast of the logits is never materialised outside it."""
    outputs: list[list[tuple[int, ...]]] = []
    real_compile = torch.compile

    def record(gm, example_inputs):
        def run(*args):
            out = gm(*args)
            outputs.append([tuple(t.shape) for t in out if isinstance(t, torch.Tensor)])
            return out

        return run

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: real_compile(fn, backend=record))
    torch._dynamo.reset()
    adapters.run_train(config(adapters, tmp_path, max_steps=2, warmup_steps=1, eval_batches=1, compile=True))
    torch._dynamo.reset()
    assert outputs, "train(compile=True) compiled nothing"
    assert all(shapes == [()] for shapes in outputs), f"compiled graphs returned {outputs}"
