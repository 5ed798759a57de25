"""Graders for the filtering pipeline: accounting (in == kept + dropped), each filter's
drops on hand-made WARC/WET shards, dedup across shards, resumption, a failing shard, the Ray
executor, tokenized output and the filter_cc script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.data.warc_factory import (
    Page,
    binary_payload,
    encode_page,
    html_page,
    sample_pages,
    write_warc,
    write_wet,
)
from tests.grading import child_env

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

REPO = Path(__file__).resolve().parents[2]
FOOTER = "Copyright 2024 Example Network. All rights reserved."
FRENCH = [
    "Le village était calme au petit matin pendant que les paysans marchaient vers leurs champs.",
    "Les enfants portaient l'eau du vieux puits de pierre près de l'église avant l'école.",
    "Le boulanger ouvrait sa boutique et le marché se remplissait de voix et de couleurs.",
    "Le soir, les familles se retrouvaient autour de la table pour partager le repas.",
]
CAFE = [
    "The small café on the corner served coffee to the farmers every morning before work began.",
    "Its owner, a friendly woman named Zoë, knew every customer by name and greeted them warmly.",
    "On market days the tables spilled onto the square and the smell of fresh bread filled the air.",
    "In winter the windows fogged up and the regulars played cards by the stove until noon.",
]
BAKERY = [
    "The bakery opened before dawn so that the first loaves were ready when the bus arrived.",
    "Flour dust covered the counter, and the baker hummed old songs while shaping the dough.",
    "Children pressed their noses to the glass to look at the cakes decorated for the festival.",
    "By evening only a few rolls were left, and they were given to the neighbours for free.",
]
PII = [
    "Please write to the river office at office@valley.example or call 283-182-3829 during the day.",
    "The server at 192.168.0.17 hosts the village calendar for the farmers and their children.",
    "Volunteers who help with the harvest festival can also reach the mayor at (283) 555-0199 today.",
    "Meeting notes, photographs and the new bus timetable are posted on the notice board every week.",
]
NEAR_WORDS = 9  # the near-duplicate changes one word of a page of 60+ words


def fast_config(**overrides):
    """Everything on except the slow-to-load harmful-content models; in-process unless overridden."""
    return {"harmful": False, "num_workers": 1} | overrides


def with_footer(page: Page) -> Page:
    html = page.body.decode("utf-8").replace("</body>", f"<p>{FOOTER}</p>\n</body>")
    return Page(page.url, html.encode("utf-8"), page.content_type)


def near_duplicate(page: Page) -> Page:
    html = page.body.decode("utf-8")
    words = html.split(" ")
    words[len(words) // 2] = "EDITED"
    return Page(page.url.replace("site", "mirror"), " ".join(words).encode("utf-8"), page.content_type)


def build_shards(directory: Path) -> dict:
    """Three shards with one document for every way in (and out of) the pipeline."""
    directory.mkdir(parents=True, exist_ok=True)
    pages = [with_footer(p) for p in sample_pages(10, seed=3)]
    cafe = Page(
        "http://cafe.example/",
        encode_page(html_page("Café", CAFE), "cp1252"),
        "text/html; charset=windows-1252",
    )
    a = write_warc(
        directory / "a.warc.gz",
        pages[:5]
        + [
            cafe,
            Page("http://img.example/x.png", binary_payload(2000), "image/png"),
            Page("http://fake.example/", binary_payload(2000, seed=1), "text/html"),
            Page("http://fr.example/", encode_page(html_page("Village", FRENCH, lang="fr"))),
            Page("http://pii.example/", encode_page(html_page("Contact", PII))),
            Page("http://short.example/", encode_page(html_page("Hi", ["Too short to keep."]))),
        ],
        malformed={2: "garbage"},
    )
    b = write_warc(
        directory / "b.warc",
        pages[5:]
        + [
            pages[0],
            near_duplicate(pages[1]),
            Page("http://lost.example/", encode_page(html_page("Lost", ["cut off"] * 30))),
        ],
        truncate_last=120,
    )
    c = write_wet(
        directory / "c.warc.wet.gz",
        [
            ("http://wet1.example/", "\n".join(BAKERY)),
            ("http://wet2.example/", b"\xff\xfe not utf-8 \xc3\x28 " + b"word " * 80),
        ],
    )
    return {"files": [a.path, b.path, c.path], "written": [a, b, c], "pages": pages}


def total_dropped(report) -> int:
    return sum(sum(reasons.values()) for reasons in report["dropped"].values())


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    import tests.data.adapters as default_adapters  # module-scoped fixture: the default adapters

    root = tmp_path_factory.mktemp("pipeline")
    shards = build_shards(root / "in")
    report = default_adapters.run_pipeline(shards["files"], root / "out", **fast_config())
    return shards, root, report


@pytest.fixture
def run(adapters, tmp_path):
    shards = build_shards(tmp_path / "in")
    report = adapters.run_pipeline(shards["files"], tmp_path / "out", **fast_config())
    return shards, tmp_path, report


def test_every_document_is_accounted_for(adapters, run):
    shards, _, report = run
    assert report["failed"] == {}
    # Good records plus malformed regions: the truncated last record of b replaces one good page
    # by one skipped region, so the total is what the factory wrote.
    expected_in = sum(len(w.urls) + w.num_malformed for w in shards["written"])
    assert report["documents_in"] == expected_in
    assert report["documents_in"] == report["documents_out"] + total_dropped(report)
    assert report["balanced"]


def test_each_filter_drops_what_it_should(adapters, run):
    _, _, report = run
    dropped = report["dropped"]
    assert sum(dropped["read"].values()) == 2  # the garbage record and the truncated tail
    assert sum(dropped["extract"].values()) == 3  # png, binary served as HTML, non-UTF-8 WET
    assert dropped["language"] == {"language=fr": 1}
    assert sum(dropped["gopher"].values()) == 1  # "Too short to keep."
    assert sum(dropped["exact_dedup"].values()) == 1  # page 0, copied into shard b
    assert sum(dropped["minhash_dedup"].values()) == 1  # page 1 and its one-word edit
    assert report["documents_out"] == 10 + 1 + 1 + 1  # 10 distinct pages, café, PII page, WET bakery


def test_outputs_are_masked_deduplicated_and_decoded(adapters, run):
    _, root, _ = run
    texts = [t for shard in adapters.read_pipeline_texts(root / "out").values() for t in shard]
    assert len(texts) == len(set(texts)) == 13
    joined = "\n".join(texts)
    assert "Zoë" in joined and "café" in joined  # the windows-1252 page was decoded correctly
    assert "office@valley.example" not in joined and "|||EMAIL_ADDRESS|||" in joined
    assert "283-182-3829" not in joined and "|||PHONE_NUMBER|||" in joined
    assert "192.168.0.17" not in joined and "|||IP_ADDRESS|||" in joined
    assert "village était calme" not in joined and "Too short" not in joined
    assert FOOTER not in joined  # boilerplate repeated on every page: removed by line dedup
    assert sum("EDITED" in t or "Page 1\n" in t for t in texts) == 1  # one of the near-duplicate pair
    assert sum(t.startswith("Page 0") for t in texts) == 1  # one copy of the exact duplicate


def test_rerun_resumes_and_a_failing_shard_is_reported(adapters, tmp_path):
    shards = build_shards(tmp_path / "in")
    out = tmp_path / "out"
    adapters.block_pipeline_shard(out, "b.warc")  # its stage-1 output cannot be written: the task fails
    first = adapters.run_pipeline(shards["files"], out, **fast_config())
    assert list(first["failed"]) == ["b.warc"]
    assert first["balanced"] and first["documents_out"] > 0  # a and c went through
    assert "b.warc" not in adapters.read_pipeline_texts(out)  # no output for a failed shard
    adapters.unblock_pipeline_shard(out, "b.warc")
    second = adapters.run_pipeline(shards["files"], out, **fast_config())
    assert second["failed"] == {} and second["shards_resumed"] == 2  # only b is processed again
    third = adapters.run_pipeline(shards["files"], out, **fast_config())
    assert third["shards_resumed"] == 3
    assert "b.warc" in adapters.read_pipeline_texts(out)
    for key in ("documents_in", "documents_out", "dropped"):
        assert second[key] == third[key]
    assert third["documents_in"] == third["documents_out"] + total_dropped(third)
    fresh = adapters.run_pipeline(shards["files"], tmp_path / "fresh", **fast_config())
    assert adapters.read_pipeline_texts(out) == adapters.read_pipeline_texts(tmp_path / "fresh")
    assert fresh["dropped"] == third["dropped"]


def test_local_processes_match_in_process(adapters, tmp_path):
    shards = build_shards(tmp_path / "in")
    serial = adapters.run_pipeline(shards["files"], tmp_path / "serial", **fast_config())
    parallel = adapters.run_pipeline(shards["files"], tmp_path / "parallel", **fast_config(num_workers=2))
    assert parallel["dropped"] == serial["dropped"] and parallel["failed"] == {}
    assert adapters.read_pipeline_texts(tmp_path / "parallel") == adapters.read_pipeline_texts(
        tmp_path / "serial"
    )


def test_quality_filter_threshold(adapters, tmp_path):
    shards = build_shards(tmp_path / "in")
    lenient = adapters.run_pipeline(
        shards["files"], tmp_path / "lenient", **fast_config(quality=True, min_quality_score=0.0)
    )
    assert "quality" not in lenient["dropped"]
    strict = adapters.run_pipeline(
        shards["files"], tmp_path / "strict", **fast_config(quality=True, min_quality_score=1.0)
    )
    before_quality = sum(
        sum(strict["dropped"][name].values()) for name in ("read", "extract", "language", "gopher")
    )
    assert strict["dropped"]["quality"] == {"low quality": strict["documents_in"] - before_quality}
    assert strict["documents_out"] == 0 and strict["balanced"]


def test_bad_inputs_are_clear_errors(adapters, tmp_path):
    shards = build_shards(tmp_path / "in")
    with pytest.raises(FileNotFoundError):
        adapters.run_pipeline([tmp_path / "missing.warc"], tmp_path / "out", **fast_config())
    with pytest.raises(ValueError):  # a tokenizer needs both files
        adapters.run_pipeline(
            shards["files"], tmp_path / "out", **fast_config(tokenizer_vocab=str(tmp_path / "v.json"))
        )
    with pytest.raises(ValueError):  # outputs are named after inputs: names must differ
        (tmp_path / "other").mkdir()
        copy = tmp_path / "other" / "a.warc.gz"
        copy.write_bytes(shards["files"][0].read_bytes())
        adapters.run_pipeline([shards["files"][0], copy], tmp_path / "out", **fast_config())


# ---- tokenized output ----------------------------------------------------------------------------


def gpt2_byte_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (as in its vocab.json)."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def write_tokenizer(directory: Path) -> tuple[Path, Path, dict[int, bytes], int]:
    """A byte-level vocab (id = byte value) plus two merges and <|endoftext|>."""
    directory.mkdir(parents=True, exist_ok=True)
    char = gpt2_byte_unicode()
    vocab = {char[b]: b for b in range(256)}
    vocab[char[ord("t")] + char[ord("h")]] = 256
    vocab[char[ord("t")] + char[ord("h")] + char[ord("e")]] = 257
    vocab["<|endoftext|>"] = 258
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\nt h\nth e\n", encoding="utf-8")
    id_to_bytes = {b: bytes([b]) for b in range(256)} | {256: b"th", 257: b"the"}
    return directory / "vocab.json", directory / "merges.txt", id_to_bytes, 258


def test_tokenized_shards_decode_to_the_kept_texts(adapters, tmp_path):
    shards = build_shards(tmp_path / "in")
    vocab, merges, id_to_bytes, eot = write_tokenizer(tmp_path / "tok")
    report = adapters.run_pipeline(
        shards["files"],
        tmp_path / "out",
        **fast_config(tokenizer_vocab=str(vocab), tokenizer_merges=str(merges)),
    )
    texts = adapters.read_pipeline_texts(tmp_path / "out")
    tokens = adapters.read_pipeline_tokens(tmp_path / "out")
    assert set(tokens) == set(texts)
    total = 0
    for shard, ids in tokens.items():
        assert ids.dtype == np.uint16
        total += ids.size
        documents, current = [], b""
        for i in ids.tolist():
            if i == eot:
                documents.append(current.decode("utf-8"))
                current = b""
            else:
                current += id_to_bytes[i]
        assert current == b""  # every document ends with <|endoftext|>
        assert documents == texts[shard]
        assert 256 in ids or 257 in ids  # the merges were applied
    assert report["tokens"] == total
    # The training job's split: whole documents, each shard's last ones held out, nothing lost.
    train, val = adapters.split_pipeline_tokens(tmp_path / "out", tmp_path / "cache", 0.3)
    assert len(train) + len(val) == total and len(val) > 0
    assert train[-1] == eot and val[-1] == eot
    pieces = [ids.tolist() for ids in tokens.values()]
    assert sorted(train.tolist() + val.tolist()) == sorted(sum(pieces, []))


# ---- Ray, the script, harmful content --------------------------------------------------------------


@pytest.mark.slow
def test_ray_executor_matches_local_and_reports_a_failing_shard(adapters, tmp_path, local_run):
    import ray  # in the `data` extra: a missing Ray fails this grader rather than skipping it

    shards = build_shards(tmp_path / "in")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # one local cluster for both runs
    try:
        adapters.block_pipeline_shard(tmp_path / "ray", "a.warc.gz")
        first = adapters.run_pipeline(
            shards["files"], tmp_path / "ray", **fast_config(executor="ray", num_workers=2)
        )
        assert list(first["failed"]) == ["a.warc.gz"] and first["balanced"]
        adapters.unblock_pipeline_shard(tmp_path / "ray", "a.warc.gz")
        report = adapters.run_pipeline(
            shards["files"], tmp_path / "ray", **fast_config(executor="ray", num_workers=2)
        )
    finally:
        ray.shutdown()
    _, root, local = local_run
    assert report["failed"] == {} and report["shards_resumed"] == 2
    assert report["dropped"] == local["dropped"] and report["documents_in"] == local["documents_in"]
    assert adapters.read_pipeline_texts(tmp_path / "ray") == adapters.read_pipeline_texts(root / "out")


def test_filter_cc_script(tmp_path):
    build_shards(tmp_path / "in")
    script = REPO / "scripts" / "filter_cc.py"
    help_text = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--executor" in help_text
    result = subprocess.run(
        [
            sys.executable,
            script,
            tmp_path / "in",
            tmp_path / "out",
            "--no-harmful",
            "--num-workers",
            "1",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "language=fr" in result.stdout and "kept" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["balanced"] and report["documents_out"] == 13


@pytest.mark.slow
def test_harmful_filter_drops_profanity(adapters, tmp_path):
    clean = sample_pages(2, seed=9)
    rude = ["You are a fucking idiot and this shit village is full of stupid assholes."] * 6
    path = write_warc(
        tmp_path / "in" / "h.warc",
        clean + [Page("http://rude.example/", encode_page(html_page("Rude", rude)))],
    ).path
    report = adapters.run_pipeline([path], tmp_path / "out", harmful=True, num_workers=1)
    assert sum(report["dropped"]["harmful"].values()) == 1
    assert report["documents_out"] == 2 and report["balanced"]


# ---- hardening: validation, stale outputs, giant pages, orphan workers ------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        {"min_language_score": float("nan")},
        {"nsfw_threshold": float("inf")},
        {"toxic_threshold": 1.5},
        {"min_quality_score": -0.1},
        {"minhash_threshold": float("nan")},
        {"num_workers": 0},
        {"batch_size": -1},
        {"max_page_bytes": 0},
        {"minhash_num_hashes": 100, "minhash_num_bands": 7},
        {"executor": "threads"},
    ],
)
def test_bad_settings_are_refused(adapters, tmp_path, setting):
    shards = build_shards(tmp_path / "in")
    with pytest.raises(ValueError):
        adapters.run_pipeline(shards["files"], tmp_path / "out", **fast_config(**setting))


def test_nan_setting_is_one_line_from_the_script(tmp_path):
    build_shards(tmp_path / "in")
    result = subprocess.run(
        [
            sys.executable,
            REPO / "scripts" / "filter_cc.py",
            tmp_path / "in",
            tmp_path / "out",
            "--min-language-score",
            "nan",
        ],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "min_language_score" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_replaced_input_is_rebuilt_not_resumed(adapters, tmp_path):
    shards = build_shards(tmp_path / "in")
    first = adapters.run_pipeline(shards["files"], tmp_path / "out", **fast_config())
    # Same name, different content: 23 new pages instead of a.warc.gz's 11 records.
    write_warc(shards["files"][0], sample_pages(23, seed=21))
    second = adapters.run_pipeline(shards["files"], tmp_path / "out", **fast_config())
    assert second["rebuilt"] == ["a.warc.gz"] and second["shards_resumed"] == 2
    fresh = adapters.run_pipeline(shards["files"], tmp_path / "fresh", **fast_config())
    assert second["documents_in"] == fresh["documents_in"] != first["documents_in"]
    assert adapters.read_pipeline_texts(tmp_path / "out") == adapters.read_pipeline_texts(tmp_path / "fresh")


GIANT_PAGE = """
import sys
from pathlib import Path
from tests.grading import import_adapters, peak_resident_kib
from tests.data.warc_factory import Page, sample_pages, write_warc

adapters = import_adapters(sys.argv[1])
folder = Path(sys.argv[2])
paragraph = "<p>" + "The quick brown fox jumps over the lazy dog near the river bank. " * 20 + "</p>"
body = ("<html><body>" + paragraph * (25_000_000 // len(paragraph)) + "</body></html>").encode()
write_warc(folder / "giant.warc", sample_pages(3) + [Page("http://giant.example/", body)])
del body
report = adapters.run_pipeline([folder / "giant.warc"], folder / "out", harmful=False, gopher=False, num_workers=1)
print(report["documents_in"], report["metrics"]["read"]["truncated pages"], report["balanced"])
print(peak_resident_kib() // 1024)  # peak resident MiB of this process alone
"""


@pytest.mark.slow
def test_a_giant_page_is_truncated_in_bounded_memory(adapters, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", GIANT_PAGE, adapters.__name__, str(tmp_path)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    counts, peak_mib = result.stdout.split("\n")[:2]
    assert counts == "4 1 True"  # every page in, the giant one counted as truncated
    assert int(peak_mib) < 600  # the 25 MB page held whole costs ~1.1 GB on its way through


def sleep_for(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def test_tasks_report_errors_and_results(adapters):
    outcomes = adapters.run_tasks(sleep_for, [(0.0,), ("not a number",), (0.01,)], num_workers=2)
    by_index = {index: (result, error) for index, result, error in outcomes}
    assert by_index[0] == (0.0, None) and by_index[2] == (0.01, None)
    assert by_index[1][0] is None and by_index[1][1].startswith("TypeError")


ORPHANS = """
import sys
from tests.grading import import_adapters
import tests.data.test_pipeline as t

adapters = import_adapters(sys.argv[1])
adapters.run_tasks(t.sleep_for, [(120.0,)] * 4, num_workers=2)
"""


@pytest.mark.slow
def test_workers_die_with_their_parent(adapters):
    import signal
    import time

    import psutil

    parent = subprocess.Popen([sys.executable, "-c", ORPHANS, adapters.__name__], env=child_env())
    workers = []
    try:
        deadline = time.time() + 60
        while len(psutil.Process(parent.pid).children()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        workers = psutil.Process(parent.pid).children(recursive=True)
        assert len(workers) >= 2, "the workers never started"
        parent.send_signal(signal.SIGKILL)  # no clean-up code runs in the parent
        parent.wait()
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"orphan workers still running: {[p.pid for p in alive]}"
    finally:  # a failed grader leaves nothing behind either
        if parent.poll() is None:
            parent.kill()
        for process in workers:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass


def test_batched_harmful_scores_equal_one_at_a_time(adapters):
    texts = ["A calm note about the village library.", "you are a fucking idiot", "free nude pics xxx", ""]
    batched = np.asarray(adapters.run_harmful_probabilities(texts))
    for text, p in zip(texts, batched, strict=True):
        label, score = adapters.run_classify_nsfw(text)
        assert p == pytest.approx(score if label == "nsfw" else 1.0 - score, abs=1e-12)


TINY_TRAIN = [
    "--d-model", "32", "--num-layers", "1", "--num-heads", "2", "--context-length", "16",
    "--batch-size", "4", "--max-steps", "3", "--warmup-steps", "1", "--eval-interval", "3",
    "--eval-batches", "1", "--device", "cpu", "--sample-tokens", "0", "--no-progress",
]  # fmt: skip


@pytest.mark.slow
def test_train_script_takes_the_token_shards(adapters, tmp_path):
    shards = build_shards(tmp_path / "in")
    vocab, merges, _, _ = write_tokenizer(tmp_path / "tok")
    adapters.run_pipeline(
        shards["files"],
        tmp_path / "out",
        **fast_config(tokenizer_vocab=str(vocab), tokenizer_merges=str(merges)),
    )
    script = [sys.executable, str(REPO / "scripts" / "train.py"), "--data", str(tmp_path / "out" / "tokens")]
    script += ["--cache-dir", str(tmp_path / "cache")] + TINY_TRAIN
    run = subprocess.run(
        script + ["--out-dir", str(tmp_path / "run")], capture_output=True, text=True, env=child_env()
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "final validation loss" in run.stdout  # the shards' held-out documents were used
    # A different tokenizer than the one that wrote the shards is refused, in one line.
    other = tmp_path / "other"
    other.mkdir()
    (other / "vocab.json").write_text(vocab.read_text())
    (other / "merges.txt").write_text("#version: 0.2\nt h\n")
    script += ["--tokenizer-dir", str(other), "--out-dir", str(tmp_path / "run2")]
    refused = subprocess.run(script, capture_output=True, text=True, env=child_env())
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "tokenizer" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
