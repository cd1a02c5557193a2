"""The app's configuration: command-line arguments after `--`, else environment variables, else defaults.

    streamlit run app/main.py -- --index DIR --model NAME_OR_PATH --device cpu --uploads DIR --budget 2000

| option              | environment variable   | default                                                  |
|---------------------|------------------------|----------------------------------------------------------|
| `--index DIR`       | `NVEMBED_INDEX_DIR`    | `./data/index`                                           |
| `--model NAME`      | `NVEMBED_MODEL`        | the model the index was built with, else `default`       |
| `--device DEVICE`   | `NVEMBED_DEVICE`       | `cuda` when available, else `cpu`                        |
| `--uploads DIR`     | `NVEMBED_UPLOAD_DIR`   | `uploads/` beside the index directory (`./data/uploads`) |
| `--budget TOKENS`   | `NVEMBED_RAG_BUDGET`   | 2000 (size of the RAG context block)                     |
| `--allow-dir DIR`   | `NVEMBED_ALLOW_DIRS`   | none: only the uploads folder may be ingested as a folder |
| (password)          | `NVEMBED_APP_PASSWORD` | none; required when the app listens beyond 127.0.0.1      |
| `--model-wait S`    | `NVEMBED_MODEL_WAIT`   | 0: the first page shows at once, the model loads meanwhile |

`--model-wait S`: how long the first page waits for the model before it is shown without it (keyword search,
the index's figures; a semantic search waits for the model). 0 shows the page at once.

`--allow-dir` is repeatable (the variable takes directories separated by `:`); see `app/security.py`.

`--model` takes `default` (the embedded SmolLM2-based model), a checkpoint directory, `tiny` (a tiny random
model for tests and demos, built in a second) or the index's stand-ins `hash:DIM` / `random:DIM`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from index.config import DEFAULT_INDEX_DIR, INDEX_DIR_ENV

from .security import ALLOW_DIRS_ENV, APP_PASSWORD_ENV, allowed_roots, parse_allow_dirs

MODEL_ENV = "NVEMBED_MODEL"
DEVICE_ENV = "NVEMBED_DEVICE"
UPLOAD_DIR_ENV = "NVEMBED_UPLOAD_DIR"
BUDGET_ENV = "NVEMBED_RAG_BUDGET"
MODEL_WAIT_ENV = "NVEMBED_MODEL_WAIT"

DEFAULT_BUDGET = 2000


class ConfigError(ValueError):
    """A bad option or environment variable; the message says which."""


@dataclass(frozen=True)
class AppConfig:
    index_dir: Path
    uploads_dir: Path
    model: str | None = None  # None: the model recorded in the index, else "default"
    device: str | None = None
    budget: int = DEFAULT_BUDGET
    model_wait: float = 0.0  # seconds the first page waits for the model before it is shown without it
    allow_dirs: tuple[Path, ...] = ()  # folders (besides the uploads folder) the folder ingest may read
    password: str | None = field(default=None, repr=False)  # the app's password, if any
    unknown_args: tuple[str, ...] = field(default=())

    def describe(self) -> dict[str, str]:
        return {
            "index": str(self.index_dir.resolve()),
            "uploads": str(self.uploads_dir.resolve()),
            "model": self.model or "(the index's own model, else default)",
            "device": self.device or "auto",
            "budget": str(self.budget),
            "allowed folders": ", ".join(str(r) for r in self.roots),
        }

    @property
    def roots(self) -> tuple[Path, ...]:
        """Where folder ingest may read: the uploads folder and every `--allow-dir`."""
        return allowed_roots(self.uploads_dir, self.allow_dirs)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamlit run app/main.py --", add_help=False, exit_on_error=False)
    p.add_argument("--index", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--device", default=None)
    p.add_argument("--uploads", default=None)
    p.add_argument("--budget", default=None)
    p.add_argument("--model-wait", default=None)
    p.add_argument("--allow-dir", action="append", default=[])
    return p


def script_args(script: str | os.PathLike[str]) -> list[str]:
    """The arguments streamlit passed after `--`: `sys.argv[1:]` when `sys.argv[0]` is this script.

    Under `streamlit run app/main.py -- ARGS` Streamlit sets `sys.argv = ["app/main.py", *ARGS]`; under a test
    runner `sys.argv` belongs to the runner and is ignored.
    """
    if not sys.argv:
        return []
    try:
        same = Path(sys.argv[0]).resolve() == Path(script).resolve()
    except OSError:
        same = False
    return list(sys.argv[1:]) if same else []


def load_config(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    """Options from `argv` (the arguments after `--`) over environment variables over defaults."""
    env = dict(os.environ if environ is None else environ)
    try:
        args, unknown = _parser().parse_known_args(argv or [])
    except argparse.ArgumentError as exc:
        raise ConfigError(f"bad app argument: {exc}") from None
    index_arg = args.index or env.get(INDEX_DIR_ENV) or None
    index_dir = Path(index_arg).expanduser() if index_arg else DEFAULT_INDEX_DIR
    uploads = args.uploads or env.get(UPLOAD_DIR_ENV) or None
    uploads_dir = Path(uploads).expanduser() if uploads else index_dir.parent / "uploads"
    model = args.model or env.get(MODEL_ENV) or None
    device = args.device or env.get(DEVICE_ENV) or None
    raw_budget = args.budget or env.get(BUDGET_ENV) or None
    budget = DEFAULT_BUDGET
    if raw_budget is not None:
        try:
            budget = int(raw_budget)
        except ValueError:
            raise ConfigError(f"--budget / ${BUDGET_ENV} must be a number of tokens, got {raw_budget!r}") from None
        if budget < 64:
            raise ConfigError(f"--budget / ${BUDGET_ENV} must be at least 64 tokens, got {budget}")
    raw_wait = args.model_wait or env.get(MODEL_WAIT_ENV) or None
    model_wait = 0.0
    if raw_wait is not None:
        try:
            model_wait = float(raw_wait)
        except ValueError:
            raise ConfigError(f"--model-wait / ${MODEL_WAIT_ENV} must be a number of seconds, got {raw_wait!r}") from None
        if not 0 <= model_wait < float("inf"):
            raise ConfigError(f"--model-wait / ${MODEL_WAIT_ENV} must be 0 or more seconds, got {raw_wait!r}")
    allow = [Path(p).expanduser() for p in args.allow_dir + parse_allow_dirs(env.get(ALLOW_DIRS_ENV))]
    return AppConfig(index_dir=index_dir, uploads_dir=uploads_dir, model=model, device=device, budget=budget,
                     model_wait=model_wait, allow_dirs=tuple(allow), password=env.get(APP_PASSWORD_ENV) or None,
                     unknown_args=tuple(unknown))
