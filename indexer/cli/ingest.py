"""``indexer ingest`` and ``indexer sync``."""

from __future__ import annotations

import sys
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Optional

import click

from ..ingest.summary import IngestSummary
from .common import CONTEXT, echo_json, err, index_option, json_option, model_options, open_from_cli, options, \
    progress_bars, progress_enabled, progress_option, safe

ingest_options = options(
    click.argument("sources", nargs=-1, type=click.Path(path_type=Path)),
    click.option("--from-list", "from_list", metavar="FILE",
                 help="Also ingest the paths listed in FILE, one per line ('-' reads standard input)."),
    index_option,
    model_options,
    click.option("--batch-size", type=click.IntRange(1), help="Images per model batch (default 32 on CPU, 256 on GPU)."),
    click.option("--workers", type=click.IntRange(0), help="Decode worker processes (default: from the core count)."),
    click.option("--threads", type=click.IntRange(1), help="Threads for the model on CPU (default: torch's choice)."),
    click.option("--max-pixels", type=click.IntRange(1), help="Refuse pictures larger than this many pixels "
                                                                 "(default 100 million; decompression bombs)."),
    click.option("--max-file-size", metavar="SIZE", callback=lambda ctx, param, value: _size(value),
                 help="Refuse files and archive members larger than this (e.g. 512MB; default 256MB), from "
                      "their size, before reading them. Also from $INDEXER_MAX_FILE_SIZE."),
    click.option("--retry-failed", is_flag=True, help="Try again the files that failed in earlier runs."),
    click.option("--index-memory", metavar="SIZE", help="Memory budget of the vectors (e.g. 4GB): above it, "
                 "large indexes use compressed IVF-PQ codes. Remembered by the index."),
    click.option("--ray", "ray_address", metavar="ADDRESS", help="Embed on a Ray cluster: local (start one "
                 "here), auto (the cluster of this machine) or ray://HOST:PORT. Use a --catalog URL that every "
                 "node reaches. Needs indexer[cluster]."),
    click.option("--gpus-per-worker", type=click.FloatRange(0), default=0.0, help="With --ray: GPUs per "
                 "embedding worker (one worker per share of the cluster's GPUs); 0 embeds on CPUs."),
    click.option("--embed-workers", type=click.IntRange(1), help="With --ray: embedding workers (actors "
                 "holding the model). Default: one per GPU share, else one."),
    progress_option,
    json_option,
)


def _size(value: Optional[str]) -> Optional[int]:
    from ..config import parse_size

    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-file-size") from None


def summary_line(summary: IngestSummary) -> str:
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.failed_by_reason.items()))
    return (f"{summary.scanned} files: {summary.embedded} embedded, {summary.unchanged} unchanged, "
            f"{summary.reused} reused (moved or duplicate), {summary.failed} failed"
            + (f" ({reasons})" if reasons else "")
            + (f", {summary.deleted} gone since the last run" if summary.deleted else "")
            + (f", {summary.purged} purged" if summary.purged else "")
            + (f", metadata read for {summary.metadata_filled} embedded before" if summary.metadata_filled else "")
            + (f", {summary.metadata_skipped} captions skipped" if summary.metadata_skipped else "")
            + f" in {summary.seconds:.1f} s")


def _warner(show_progress: bool) -> Callable[[str], None]:
    """Warnings above a progress bar without breaking it."""
    if not show_progress:
        return err

    def warn(message: str) -> None:
        from tqdm import tqdm

        tqdm.write(safe(message), file=sys.stderr)
    return warn


def run_ingest_command(sources: tuple[Path, ...], from_list: Optional[str], index_dir: Path,
                       retry_failed: bool, index_memory: Optional[str], progress: Optional[bool], as_json: bool,
                       purge: bool = False, ray_address: Optional[str] = None, gpus_per_worker: float = 0.0,
                       embed_workers: Optional[int] = None, **model_and_settings: Any) -> None:
    from ..media.sources import read_list

    if not sources and not from_list:
        raise click.UsageError("give SOURCES (folders, archives, image files) or --from-list FILE")
    if (gpus_per_worker or embed_workers) and not ray_address:
        raise click.UsageError("--gpus-per-worker and --embed-workers go with --ray")
    show = progress_enabled(progress)
    index = open_from_cli(index_dir, create=True, **model_and_settings)
    with index, progress_bars(show, together=bool(ray_address)) as bars:
        if index_memory:
            index.set_memory_budget(index_memory)
        # Listed paths may have gone since the list was made: those are skipped, not fatal.
        listed = read_list(from_list) if from_list else ()
        cluster = {"ray": ray_address, "gpus_per_worker": gpus_per_worker, "embed_workers": embed_workers} \
            if ray_address else {}
        summary = index.ingest(chain(sources, listed), retry_failed=retry_failed, progress=bars,
                               warn=_warner(show), strict=not from_list, purge=purge, **cluster)
    if as_json:
        echo_json(summary.to_dict())
    else:
        err(summary_line(summary))


@click.command(context_settings=CONTEXT)
@ingest_options
def ingest(**kwargs: Any) -> None:
    """Embed every image under SOURCES into the index.

    SOURCES are folders (scanned recursively), image files, and tar / tar.gz / zip archives (read as
    streams, members addressed as ARCHIVE::MEMBER; WebDataset shard ranges like
    shards-{000..099}.tar are expanded).

    Runs again are incremental: unchanged files are skipped without being read (an unchanged archive
    is not even opened), moved or duplicated files reuse their embedding, files gone from a scanned
    folder are marked deleted, and an interrupted run resumes where it stopped. Unreadable files
    are recorded with a reason and the run goes on.

    \b
    Examples:
      indexer ingest ~/photos --index ./photos-index
      indexer ingest shards/train-{0000..0127}.tar --index ./web-index --json
      find /data -name '*.jpg' | indexer ingest --from-list - --index ./data-index
      indexer ingest shards/ --index ./web-index --catalog postgresql+psycopg://me@db/web --ray local
    """
    run_ingest_command(**kwargs)


@click.command(context_settings=CONTEXT)
@ingest_options
@click.option("--purge", is_flag=True, help="Remove deleted items (and embeddings no item uses) for good, "
                                           "instead of keeping them as history.")
def sync(**kwargs: Any) -> None:
    """Bring the index in line with SOURCES: new, changed, moved and deleted files.

    The same as ingest, plus --purge: deleted items are normally kept as history (hidden from search
    and classification); --purge removes them and their unused embeddings, and the vectors follow
    without a full rebuild.

    \b
    Example:
      indexer sync ~/photos --index ./photos-index --purge
    """
    run_ingest_command(**kwargs)
