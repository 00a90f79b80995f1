"""What every command shares: options, opening the index, progress bars, and safe output.

Results go to stdout (``--json`` for machine-readable output); progress, warnings and summaries go
to stderr. Errors exit with code 1 and one line saying what to do; usage errors exit with code 2.
Text that comes from the collection (file names, labels) is printed with its control characters
escaped, so a file name cannot drive the terminal.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import click

from ..config import Settings
from ..models.templates import TEMPLATE_SETS

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def safe(text: Any) -> str:
    """``text`` with control characters (escape sequences, tabs and line breaks included) shown as
    ``\\xNN``: a file name can neither drive the terminal nor break one line of output into two."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def options(*decorators: Callable) -> Callable:
    """Applies several click decorators as one, in reading order."""
    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


def _remember_catalog(ctx: click.Context, _param: click.Parameter, value: Optional[str]) -> None:
    if value:
        ctx.meta["indexer.catalog"] = value


index_option = options(
    click.option("--index", "index_dir", envvar="INDEXER_INDEX", required=True,
                 type=click.Path(file_okay=False, path_type=Path),
                 help="Index folder (catalog.sqlite + vectors.faiss). Also from $INDEXER_INDEX."),
    click.option("--catalog", expose_value=False, callback=_remember_catalog,
                 metavar="URL", help="Keep the catalog in this database instead of the index folder's SQLite "
                 "file, e.g. postgresql+psycopg://user@host/db (needs indexer[cluster]); the FAISS files stay "
                 "in --index. Also from $INDEXER_CATALOG."),
)
def _results_only_on_stdout(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    """With ``--json`` stdout carries the JSON and nothing else: while the command runs, whatever a library
    writes to stdout (a quantiser's progress bar, a C library's notice) goes to stderr, at the level of the
    file descriptor, and the results go to the real stdout through ``results()``."""
    if not value or RESULTS in ctx.meta:
        return value
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # an in-process runner's buffer: no descriptor to move
        fd = None
    if fd is None:
        stream = sys.stdout
        sys.stdout = sys.stderr

        def restore() -> None:
            sys.stdout = stream
    else:
        saved = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
        stream = os.fdopen(saved, "w", encoding="utf-8", closefd=True)

        def restore() -> None:
            stream.flush()
            sys.stdout.flush()
            os.dup2(saved, fd)
            stream.close()
    ctx.meta[RESULTS] = stream
    ctx.call_on_close(restore)
    return value


RESULTS = "indexer.results"
json_option = click.option("--json", "as_json", is_flag=True, callback=_results_only_on_stdout,
                           help="Print machine-readable JSON on stdout (and nothing else there).")


def results() -> Any:
    """Where results go: the real stdout (under ``--json``, while libraries' output is sent to stderr)."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(RESULTS, sys.stdout) if ctx is not None else sys.stdout
where_option = click.option(
    "--where", metavar="EXPR",
    help="Only items this filter keeps, e.g. \"taken >= 2024-06-01 and camera ~ canon\" (fields: taken, camera, "
         "caption, path, label, width, height, size, lat, lon; operators = != < <= > >= ~; and, or, not, brackets). "
         "See the search guide.")
progress_option = click.option("--progress/--no-progress", default=None,
                               help="Progress bar on stderr (default: when a terminal).")
templates_option = click.option(
    "--templates", type=click.Choice(TEMPLATE_SETS), default="default", show_default=True,
    help="Prompt templates: the bare label, a short set of captions, or CLIP's 80 ImageNet templates.")
model_options = options(
    click.option("--model", envvar="INDEXER_MODEL", help=(
        "Embedding model: an open_clip architecture (ViT-B-32), hf-hub:ORG/REPO, local-dir:FOLDER, or a "
        "bundled model (tiny-shapes). Default: the index's own model; for a new index ViT-B-32-256 "
        "(datacomp_s34b_b86k). Also from $INDEXER_MODEL.")),
    click.option("--pretrained", envvar="INDEXER_PRETRAINED",
                 help="open_clip pretrained tag for --model, or 'random' (benchmarks only)."),
    click.option("--weights", type=click.Path(dir_okay=False, exists=True),
                 help="A local checkpoint file for --model (works offline)."),
    click.option("--device", help="cuda, cuda:1, mps or cpu. Default: the best available. Also from $INDEXER_DEVICE."),
    click.option("--runtime", type=click.Choice(["auto", "openvino", "torch"]),
                 help="Inference runtime. auto (default): OpenVINO on the CPU (the model is converted once and "
                      "cached; no torch afterwards), torch on a GPU."),
    click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "int8"]),
                 help="OpenVINO precision. auto (default): bf16 where the CPU has the units, else fp32, and int8 "
                      "on a new index of 50,000+ items when, calibrated on the collection, its neighbour lists "
                      "agree with full precision (recall@10 >= 0.9; needs indexer[int8]); int8: always, with "
                      "the agreement told. `indexer status` shows the decision and its figures."),
)


def open_from_cli(index_dir: Path, model: Optional[str] = None, pretrained: Optional[str] = None,
                  weights: Optional[str] = None, device: Optional[str] = None, create: bool = False, **settings: Any):
    """Opens the index with the model and settings the command line gives (``None``: the default)."""
    from ..index import open_index

    ctx = click.get_current_context(silent=True)
    catalog = ctx.find_root().meta.get("indexer.catalog") if ctx is not None else None
    config = Settings().replace(catalog=catalog, device=device, **settings)
    return open_index(index_dir, model, pretrained=pretrained, weights=weights, settings=config, create=create)


def progress_enabled(flag: Optional[bool]) -> bool:
    return sys.stderr.isatty() if flag is None else flag


@contextmanager
def progress_bars(enabled: bool, unit: str = "img", together: bool = False) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done_now, total)`` callback drawing one tqdm bar per stage on stderr; a new
    stage closes the bar of the one before, unless ``together`` (stages that advance side by side, as
    the shards and the images of a distributed run: their rate is images/s across the cluster)."""
    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if not enabled:
            return
        if stage not in bars:
            from tqdm import tqdm

            if not together:
                for bar in bars.values():
                    bar.close()
            bars[stage] = tqdm(total=total, desc=stage, unit=unit if stage != "shards" else "shard",
                               file=sys.stderr, dynamic_ncols=True, smoothing=0.1, position=len(bars))
        bars[stage].update(done)

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False), file=results())


def err(message: str) -> None:
    click.echo(safe(message), err=True)


def echo_lines(text: str, err: bool = False) -> None:
    """Text of several lines, each made safe: line breaks kept, nothing else."""
    click.echo("\n".join(safe(line) for line in text.split("\n")), err=err)


class _StderrHandler(logging.Handler):
    """The library's warnings (a rebuilt vectors file, an upgraded schema) as plain lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err(record.getMessage())


def setup_logging() -> None:
    logger = logging.getLogger("indexer")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler(logging.WARNING))
        logger.propagate = False
