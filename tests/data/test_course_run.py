"""scripts/course_run.py, the whole course in one command: which stages a rerun skips,
which settings make a stage (and everything downstream) run again, the one-line errors, and -- slow --
the smallest preset end to end, twice."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grading import child_env

pytestmark = pytest.mark.extension

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "course_run.py"
STAGE_NAMES = ["crawl", "filter", "tokenizer", "tokenize", "pretrain", "scaling", "sft", "grpo", "evaluate"]


@pytest.fixture
def course(adapters):
    return adapters.course_run_module()


def run_script(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, env=child_env(), timeout=timeout)


def changed_stages(course, **change) -> set[str]:
    base = course.PRESETS["quick"]
    before, after = course.stage_keys(base), course.stage_keys(dataclasses.replace(base, **change))
    assert list(before) == STAGE_NAMES
    return {name for name in before if before[name] != after[name]}


def test_a_changed_setting_reruns_its_stage_and_everything_downstream(course):
    assert changed_stages(course) == set()
    assert changed_stages(course, pretrain_steps=301) == {"pretrain", "scaling", "evaluate"}
    assert changed_stages(course, vocab_size=777) == {
        "tokenizer",
        "tokenize",
        "pretrain",
        "scaling",
        "evaluate",
    }
    assert changed_stages(course, crawl_seed=1) == set(STAGE_NAMES) - {"sft", "grpo"}
    assert changed_stages(course, sft_steps=401) == {"sft", "grpo", "evaluate"}
    assert changed_stages(course, grpo_steps=21) == {"grpo", "evaluate"}
    assert changed_stages(course, num_workers=1) == set()  # how, not what: nothing reruns


def test_real_warc_input_is_keyed_by_its_files(course, adapters, tmp_path):
    """With --warc, a replaced input file reruns every stage that depends on the crawl."""
    folder = tmp_path / "cc"
    adapters.run_crawl_sample(
        ["One short English document about rivers and fields."] * 2, folder, num_shards=1
    )
    config = dataclasses.replace(course.PRESETS["quick"], warc=str(folder))
    before = course.stage_keys(config)
    shard = next(folder.glob("*.warc.gz"))
    shard.write_bytes(shard.read_bytes() + b"\n")  # the same name, other content
    after = course.stage_keys(config)
    assert {name for name in before if before[name] != after[name]} == set(STAGE_NAMES) - {"sft", "grpo"}


def test_every_preset_gives_every_sweep_point_enough_steps(course):
    for preset in course.PRESETS.values():
        course.check_sweep(preset)  # raises ValueError naming the budget and width otherwise
    with pytest.raises(ValueError, match="--sweep-budgets 1e"):
        course.check_sweep(dataclasses.replace(course.PRESETS["quick"], sweep_budgets=(1e8, 1e9)))


def fake_stage(course, calls: list, outputs=("result.txt",)):
    def work(run, folder: Path) -> dict:
        calls.append(sorted(p.name for p in folder.iterdir()))  # what the stage found in its folder
        for name in outputs:
            (folder / name).write_text(str(run.config.articles))
        return {"articles": run.config.articles}

    return course.Stage("fake", (), lambda config: {"articles": config.articles}, work)


def run_fake(course, stage, out_dir: Path, articles: int) -> dict:
    config = dataclasses.replace(course.PRESETS["smoke"], articles=articles)
    return course.run_stage(stage, course.Course(config, out_dir, out_dir / "cache"), {})


def test_a_finished_stage_is_skipped_and_a_changed_one_starts_clean(course, tmp_path):
    calls: list = []
    stage = fake_stage(course, calls)
    first = run_fake(course, stage, tmp_path, 10)
    assert first["status"] == "ran" and first["summary"] == {"articles": 10}
    assert first["outputs"] == ["fake/result.txt"] and calls == [["pending.json"]]
    again = run_fake(course, stage, tmp_path, 10)
    assert again["status"] == "skipped" and again["summary"] == {"articles": 10} and len(calls) == 1
    (tmp_path / "fake" / "leftover.tmp").write_text("from the old settings")
    changed = run_fake(course, stage, tmp_path, 11)
    assert changed["status"] == "ran" and changed["key"] != first["key"]
    assert calls[-1] == ["pending.json"]  # the stale folder was emptied first
    assert (tmp_path / "fake" / "result.txt").read_text() == "11"


def test_a_missing_output_or_an_unreadable_record_reruns_the_stage(course, tmp_path):
    calls: list = []
    stage = fake_stage(course, calls)
    run_fake(course, stage, tmp_path, 10)
    (tmp_path / "fake" / "result.txt").unlink()
    assert run_fake(course, stage, tmp_path, 10)["status"] == "ran"
    (tmp_path / "fake" / "stage.json").write_text("{not json")
    assert run_fake(course, stage, tmp_path, 10)["status"] == "ran"
    assert len(calls) == 3


def test_an_interrupted_stage_resumes_in_its_folder_unless_its_settings_changed(course, tmp_path):
    calls: list = []
    stage = fake_stage(course, calls)
    key = course.stage_key("fake", {"articles": 10}, {})
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "pending.json").write_text(json.dumps({"key": key}))
    (folder / "checkpoint.pt").write_text("half done")
    resumed = run_fake(course, stage, tmp_path, 10)
    assert resumed["status"] == "ran" and resumed["resumed"] is True
    assert calls[-1] == ["checkpoint.pt", "pending.json"]
    (folder / "stage.json").unlink()
    (folder / "pending.json").write_text(json.dumps({"key": key}))
    other = run_fake(course, stage, tmp_path, 12)  # interrupted with other settings: start clean
    assert other["resumed"] is False and calls[-1] == ["pending.json"]
    assert not (folder / "pending.json").exists() and (folder / "stage.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--quick"], "--out-dir"),
        (["--out-dir", "X", "--quick", "--preset", "gpu"], "choose one preset"),
        (["--out-dir", "X", "--vocab-size", "100"], "--vocab-size"),
        (["--out-dir", "X", "--pretrain-steps", "0"], "--pretrain-steps"),
        (["--out-dir", "X", "--sweep-budgets", "1e10"], "--sweep-budgets"),
        (["--out-dir", "X", "--sweep-d-models", "16", "20"], "--sweep-d-models"),
        (["--out-dir", "X", "--d-model", "66", "--num-heads", "4"], "--d-model"),
        (["--out-dir", "X", "--warc", "no/such/folder"], "no/such/folder"),
        (["--out-dir", "X", "--device", "tpu"], "--device"),
        (["--out-dir", "X", "--warc", "EMPTY"], "no WARC/WET files"),
        (["--out-dir", "X", "--quick", "--sweep-budgets", "1e8", "1e9"], "--sweep-budgets 1e+08"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    names = {"X": str(tmp_path / "out"), "EMPTY": str(tmp_path / "empty")}
    args = [names.get(a, a) for a in args]
    result = run_script(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "out").exists()  # nothing written before the arguments are checked


def test_out_dir_that_is_a_file_is_an_error(tmp_path):
    path = tmp_path / "report.md"
    path.write_text("not a folder")
    result = run_script("--out-dir", str(path), "--smoke")
    assert result.returncode == 2 and result.stderr.startswith("error: ") and str(path) in result.stderr


def test_help_lists_the_presets_and_the_fields():
    result = run_script("--help")
    assert result.returncode == 0
    for flag in (
        "--out-dir",
        "--quick",
        "--smoke",
        "--warc",
        "--preset",
        "--pretrain-steps",
        "--sweep-budgets",
    ):
        assert flag in result.stdout


@pytest.mark.slow
def test_quick_run_end_to_end_then_a_rerun_skips_every_stage(tmp_path):
    """``--quick`` (about 3 CPU-minutes): every stage runs, the report card lists them and balances the
    funnel, the pretrained model beats the unigram entropy, SFT and then GRPO raise held-out accuracy
    with disjoint 95% intervals; a rerun skips all of them; a changed GRPO setting reruns GRPO and the
    evaluation only."""
    out, cache = tmp_path / "course", ["--cache-dir", str(tmp_path / "cache")]  # builds the corpus: ~20 s
    first = run_script("--out-dir", str(out), "--quick", *cache, timeout=1500)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    report = (out / "report.md").read_text()
    for name in STAGE_NAMES:
        assert re.search(rf"^\| {name} \| ran \|", report, re.MULTILINE), name
        record = json.loads((out / name / "stage.json").read_text())
        assert record["outputs"] and all((out / p).is_file() for p in record["outputs"])
    funnel = json.loads((out / "filter" / "stage.json").read_text())["summary"]
    dropped = sum(sum(reasons.values()) for reasons in funnel["dropped"].values())
    assert funnel["documents_in"] == funnel["documents_out"] + dropped > funnel["documents_out"] > 0
    assert (
        f"{funnel['documents_in']:,} in = {funnel['documents_out']:,} kept + {dropped:,} dropped (yes)"
        in report
    )
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (out / image).is_file(), image
    evaluation = json.loads((out / "evaluate" / "stage.json").read_text())["summary"]
    assert [row["policy"] for row in evaluation["alignment"]] == ["base (untrained)", "SFT", "SFT + GRPO"]
    assert all(r["ci_low"] <= r["accuracy"] <= r["ci_high"] for r in evaluation["alignment"])
    assert evaluation["val_loss"] < evaluation["unigram_entropy"]  # the pretrained model learned something
    base, sft, grpo = evaluation["alignment"]
    # Each stage helps beyond noise (measured: 0.000 -> 0.470 -> 0.853, intervals far apart).
    assert base["ci_high"] < sft["ci_low"] and sft["ci_high"] < grpo["ci_low"]

    again = run_script("--out-dir", str(out), "--quick", *cache, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped: finished earlier with the same settings") == len(STAGE_NAMES)

    changed = run_script("--out-dir", str(out), "--quick", *cache, "--grpo-steps", "3", timeout=600)
    assert changed.returncode == 0, changed.stderr[-3000:]
    ran = re.findall(r"^\[\d/9\] (\w+): done", changed.stdout, re.MULTILINE)
    assert ran == ["grpo", "evaluate"]
