"""Run the lm-evaluation-harness on our models: registers the model ``lmfs`` and hands every argument to
the harness's own command line (``lm-eval``), so its flags and output are the harness's.

Needs the optional extra: pip install -e ".[eval]". Offline by default: HF_DATASETS_OFFLINE and
HF_HUB_OFFLINE are set unless you set them yourself, so use local tasks (--include_path DIR with YAMLs
whose dataset_path is json and data_files are local) or datasets already in your cache.

Model arguments (--model_args, comma-separated): path (required), device, batch_size, max_gen_toks,
threads (torch CPU threads; threads=1 is much faster on a busy CPU).

Examples:
    python scripts/lm_eval_harness.py --model lmfs --model_args path=runs/cpu,threads=1 \\
        --include_path my_tasks/ --tasks my_arc_task --batch_size 16
    python scripts/lm_eval_harness.py --model lmfs --model_args path=exports/cpu-llama --tasks my_task \\
        --include_path my_tasks/ --output_path runs/eval/lm_eval.json
    python scripts/lm_eval_harness.py ls tasks --include_path my_tasks/
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") and len(sys.argv) == 2:
        print(__doc__)
    try:
        from lm_eval.__main__ import cli_evaluate

        import alignment.lm_eval_model  # noqa: F401  (registers --model lmfs)
    except ImportError as error:
        print(
            f"error: the lm-evaluation-harness is not installed ({error}); pip install lm-eval",
            file=sys.stderr,
        )
        sys.exit(2)
    cli_evaluate()


if __name__ == "__main__":
    main()
