"""Run one fuzz target under Atheris, libFuzzer's coverage-guided engine for Python.

    python -m tests.fuzz.run --list
    python -m tests.fuzz.run TARGET [--seconds N | --runs N] [--corpus DIR] [--artifacts DIR] [--seed N]

The corpus folder (a temporary one by default) is seeded from ``tests/fuzz/seeds.py`` when empty and keeps what
libFuzzer finds interesting, so a long campaign resumes where the last one stopped. An input that makes the target
raise, hang past the per-input timeout or exceed the memory limit is written to ``--artifacts`` (``crash-*``,
``timeout-*``, ``oom-*``) and the run exits non-zero; ``tests/fuzz/test_crashers.py`` replays every such file kept
under ``tests/fuzz/crashers/<target>/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# OpenCV reads its own pixel limit once, when it loads (the targets import it): set well above the guard's limit in
# the image target, so that what is fuzzed is the guard, not OpenCV's backstop behind it.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(1 << 24))
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")  # its decoders log every refused input

PER_INPUT_SECONDS = 20
RSS_LIMIT_MB = 3072


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?")
    parser.add_argument("--list", action="store_true", help="print the target names and exit")
    parser.add_argument("--seconds", type=int, help="stop after this long")
    parser.add_argument("--runs", type=int, help="stop after this many inputs")
    parser.add_argument("--corpus", type=Path, help="corpus folder, kept between runs")
    parser.add_argument("--artifacts", type=Path, help="where crashing inputs are written")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer's random seed (0: from the clock)")
    args = parser.parse_args(argv)

    import atheris

    with atheris.instrument_imports(include=["ops"]):
        from tests.fuzz.seeds import SEEDS
        from tests.fuzz.targets import TARGETS

    if args.list:
        print("\n".join(TARGETS))
        return
    if args.target not in TARGETS:
        parser.error(f"target must be one of {sorted(TARGETS)}")
    corpus = args.corpus or Path(tempfile.mkdtemp(prefix=f"fuzz-{args.target}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for i, seed in enumerate(SEEDS[args.target]()):
            (corpus / f"seed-{i:03d}").write_bytes(seed)
    flags = [f"-timeout={PER_INPUT_SECONDS}", f"-rss_limit_mb={RSS_LIMIT_MB}", f"-seed={args.seed}"]
    flags += [f"-max_total_time={args.seconds}"] if args.seconds else []
    flags += [f"-runs={args.runs}"] if args.runs else []
    if args.artifacts:
        args.artifacts.mkdir(parents=True, exist_ok=True)
        flags.append(f"-artifact_prefix={args.artifacts}/")
    atheris.Setup([sys.argv[0], *flags, str(corpus)], TARGETS[args.target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
