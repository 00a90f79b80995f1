"""The ``indexer`` command: each subcommand parses, calls one library function, formats.

Results go to stdout (``--json`` for machine-readable output); progress, warnings and summaries go
to stderr. Errors exit with code 1 and one line saying what to do; usage errors exit with code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import click

from .config import Settings
from .errors import IndexerError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# Commands defined in their own modules, imported only when used (they import from this one).
LAZY_COMMANDS = {"audit": "indexer.audit_cli"}


class IndexerGroup(click.Group):
    """Turns the library's errors into a clean one-line message and exit code 1; loads the
    commands of ``LAZY_COMMANDS`` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name in LAZY_COMMANDS and name not in self.commands:
            import importlib

            self.add_command(getattr(importlib.import_module(LAZY_COMMANDS[name]), name))
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IndexerError as exc:
            raise click.ClickException(str(exc)) from None


def index_option(f: Callable) -> Callable:
    return click.option(
        "--index", "index_dir", envvar="INDEXER_INDEX", required=True, type=click.Path(file_okay=False, path_type=Path),
        help="Index folder (catalog.sqlite + vectors.faiss). Also from $INDEXER_INDEX.",
    )(f)


def json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")(f)


def model_options(f: Callable) -> Callable:
    options = [
        click.option("--model", envvar="INDEXER_MODEL", help=(
            "Embedding model: an open_clip architecture (ViT-B-32), hf-hub:ORG/REPO, local-dir:FOLDER, or a "
            "bundled model (tiny-shapes). Default: the index's own model; for a new index ViT-B-32-256 "
            "(datacomp_s34b_b86k). Also from $INDEXER_MODEL.")),
        click.option("--pretrained", envvar="INDEXER_PRETRAINED",
                     help="open_clip pretrained tag for --model, or 'random' (benchmarks only)."),
        click.option("--weights", type=click.Path(dir_okay=False, exists=True),
                     help="A local checkpoint file for --model (works offline)."),
        click.option("--device", envvar="INDEXER_DEVICE", help="cuda, cuda:1, mps or cpu. Default: the best available."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def open_from_cli(index_dir: Path, model: Optional[str] = None, pretrained: Optional[str] = None,
                  weights: Optional[str] = None, device: Optional[str] = None, create: bool = False, **settings: Any):
    from .index import open_index

    config = Settings()
    if device:
        config.device = device
    for key, value in settings.items():
        if value is not None:
            setattr(config, key, value)
    return open_index(index_dir, model, pretrained=pretrained, weights=weights, settings=config, create=create)


def progress_enabled(flag: Optional[bool]) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def err(message: str) -> None:
    click.echo(message, err=True)


@click.group(cls=IndexerGroup, context_settings=CONTEXT)
@click.version_option(package_name="indexer", message="indexer %(version)s")
def main() -> None:
    """Zero-shot image search and classification for large image collections.

    Embed a collection once with an OpenCLIP model, then search it with text or images and
    classify it into any label set, in seconds, without reading an image again.

    \b
    Quick start (offline, with the bundled model):
      indexer ingest ./photos --index ./photos-index --model tiny-shapes
      indexer search "a red star" --index ./photos-index
      indexer classify --labels "red circle,blue square" --index ./photos-index

    Set INDEXER_INDEX to leave out --index. Every command has --help with an example.
    """


def ingest_options(f: Callable) -> Callable:
    options = [
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
        click.option("--retry-failed", is_flag=True, help="Try again the files that failed in earlier runs."),
        click.option("--index-memory", metavar="SIZE", help="Memory budget of the vectors (e.g. 4GB): above it, "
                     "large indexes use compressed IVF-PQ codes. Remembered by the index."),
        click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal)."),
        json_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _run_ingest(sources: tuple[Path, ...], from_list: Optional[str], index_dir: Path, model: Optional[str],
                pretrained: Optional[str], weights: Optional[str], device: Optional[str], batch_size: Optional[int],
                workers: Optional[int], threads: Optional[int], max_pixels: Optional[int], retry_failed: bool,
                index_memory: Optional[str], progress: Optional[bool], as_json: bool, purge: bool = False) -> None:
    from itertools import chain

    from .sources import read_list

    if not sources and not from_list:
        raise click.UsageError("give SOURCES (folders, archives, image files) or --from-list FILE")
    index = open_from_cli(index_dir, model, pretrained, weights, device, create=True, batch_size=batch_size,
                          workers=workers, threads=threads, max_pixels=max_pixels)
    listed = read_list(from_list) if from_list else ()
    with index:
        if index_memory:
            from .store.vectors import parse_size

            try:
                index.set_memory_budget(parse_size(index_memory))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint="--index-memory") from None
        # Listed paths may have gone since the list was made: those are skipped, not fatal.
        if from_list:
            summary = index.ingest(chain(sources, listed), retry_failed=retry_failed, purge=purge,
                                   progress=progress_enabled(progress), warn=err, strict=False)
        else:
            summary = index.ingest(sources, retry_failed=retry_failed, purge=purge,
                                   progress=progress_enabled(progress), warn=err)
    if as_json:
        echo_json(summary.to_dict())
        return
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.failed_by_reason.items()))
    err(f"{summary.scanned} files: {summary.embedded} embedded, {summary.unchanged} unchanged, "
        f"{summary.reused} reused (moved or duplicate), {summary.failed} failed"
        + (f" ({reasons})" if reasons else "")
        + (f", {summary.deleted} gone since the last run" if summary.deleted else "")
        + (f", {summary.purged} purged" if summary.purged else "") + f" in {summary.seconds:.1f} s")


@main.command(context_settings=CONTEXT)
@ingest_options
def ingest(**options: Any) -> None:
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
    """
    _run_ingest(**options)


@main.command(context_settings=CONTEXT)
@ingest_options
@click.option("--purge", is_flag=True, help="Remove deleted items (and embeddings no item uses) for good, "
                                           "instead of keeping them as history.")
def sync(**options: Any) -> None:
    """Bring the index in line with SOURCES: new, changed, moved and deleted files.

    The same as ingest, plus --purge: deleted items are normally kept as history (hidden from search
    and classification); --purge removes them and their unused embeddings, and the vectors follow
    without a full rebuild.

    \b
    Example:
      indexer sync ~/photos --index ./photos-index --purge
    """
    _run_ingest(**options)


@main.command(context_settings=CONTEXT)
@click.argument("query", required=False)
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Query image (reverse image search); repeatable, and combinable with QUERY.")
@click.option("-k", "--top-k", "k", default=10, show_default=True, type=click.IntRange(1), help="Number of results.")
@click.option("--path-filter", help="Only paths containing this text, or matching this glob (*, ?, [..]).")
@click.option("--min-score", type=float, help="Only results with a cosine score at least this.")
@index_option
@model_options
@json_option
def search(query: Optional[str], images: tuple[Path, ...], k: int, path_filter: Optional[str],
           min_score: Optional[float], index_dir: Path, model: Optional[str], pretrained: Optional[str],
           weights: Optional[str], device: Optional[str], as_json: bool) -> None:
    """Find the images that best match a text and/or an image.

    QUERY is text; join terms with ' + ' and ' - ' to add or subtract them, and weight a term with
    'W:term'. A term naming an image file searches by that image.

    \b
    Examples:
      indexer search "a dog on a beach" --index ./photos-index -k 20
      indexer search "dog + beach - people" --index ./photos-index
      indexer search "2:red fox + snow" --index ./photos-index --min-score 0.2
      indexer search --image query.jpg --index ./photos-index --path-filter "*/2024/*"
    """
    if not query and not images:
        raise click.UsageError("give a QUERY text, an --image, or both")
    with open_from_cli(index_dir, model, pretrained, weights, device) as index:
        hits = index.search(query, images, k=k, path_filter=path_filter, min_score=min_score)
    if as_json:
        echo_json([hit.to_dict() for hit in hits])
        return
    if not hits:
        err("no results")
    for hit in hits:
        extra = f"  (+{len(hit.duplicates)} duplicate{'s' if len(hit.duplicates) > 1 else ''})" if hit.duplicates else ""
        click.echo(f"{hit.score:.4f}  {hit.path}{extra}")


@main.command(context_settings=CONTEXT)
@click.option("--labels", help="Comma-separated labels, e.g. 'cat,dog,bird'.")
@click.option("--labels-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A text file with one label per line (# comments allowed).")
@click.option("--templates", type=click.Choice(["none", "default", "ensemble"]), default="default", show_default=True,
              help="Prompt templates: the bare label, a short set of captions, or CLIP's 80 ImageNet templates.")
@click.option("--top-k", default=1, show_default=True, type=click.IntRange(1), help="Labels kept per image.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write predictions to a .csv (path,label,score,label_2,score_2,...) or .jsonl file.")
@click.option("--no-store", is_flag=True, help="Do not keep the predictions in the catalog.")
@index_option
@model_options
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@json_option
def classify(labels: Optional[str], labels_file: Optional[Path], templates: str, top_k: int, output: Optional[Path],
             no_store: bool, index_dir: Path, model: Optional[str], pretrained: Optional[str], weights: Optional[str],
             device: Optional[str], progress: Optional[bool], as_json: bool) -> None:
    """Classify every image of the index into one of a set of labels (zero-shot).

    Uses the stored embeddings only: no image is read again, and label embeddings are cached, so
    trying another label set takes seconds. Predictions are also kept in the catalog.

    \b
    Examples:
      indexer classify --index ./photos-index --labels "cat,dog,bird" --output labels.csv
      indexer classify --index ./photos-index --labels-file species.txt --templates ensemble --top-k 3 --json
    """
    from tqdm import tqdm

    from .classify import read_labels
    from .report import PredictionWriter, output_format

    label_list = read_labels(labels, labels_file)
    if output is not None:
        output_format(output)  # refuse a bad extension before any work
    with open_from_cli(index_dir, model, pretrained, weights, device) as index:
        total = index.count_embedded()
        first = [True]

        def to_stdout(predictions: list) -> None:
            for p in predictions:
                if as_json:
                    sys.stdout.write(("[\n" if first[0] else ",\n") + json.dumps(p.to_dict(), ensure_ascii=False))
                    first[0] = False
                elif output is None:
                    sys.stdout.write(f"{p.path}\t{p.labels[0][0]}\t{p.labels[0][1]:.4f}\n")

        with tqdm(total=total, unit="img", desc="classifying", file=sys.stderr,
                  disable=not progress_enabled(progress)) as bar:
            if output is not None:
                with PredictionWriter(output, min(top_k, len(label_list))) as writer:
                    def sink(predictions: list) -> None:
                        writer.write(predictions)
                        to_stdout(predictions)

                    result = index.classify(label_list, templates, top_k, on_predictions=sink, store=not no_store,
                                            progress=bar.update)
            else:
                result = index.classify(label_list, templates, top_k, on_predictions=to_stdout,
                                        store=not no_store, progress=bar.update)
    if as_json:
        sys.stdout.write("[]\n" if first[0] else "\n]\n")
    counts = ", ".join(f"{label}: {n}" for label, n in sorted(result.counts.items(), key=lambda kv: -kv[1]))
    err(f"classified {result.items} images over {len(label_list)} labels in {result.seconds:.2f} s ({counts})"
        + (f"; wrote {output}" if output else ""))


@main.command(context_settings=CONTEXT)
@index_option
@click.option("--failures", "show_failures", is_flag=True, help="Also list the unreadable files with their reasons.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(0), help="How many failures to list (0: all).")
@json_option
def status(index_dir: Path, show_failures: bool, limit: int, as_json: bool) -> None:
    """Show what an index holds: counts, failures by reason, model, vectors, sizes.

    \b
    Examples:
      indexer status --index ./photos-index --json
      indexer status --index ./photos-index --failures --limit 0
    """
    with open_from_cli(index_dir) as index:
        info = index.status()
        failures = index.failures(limit or None) if show_failures else None
    if as_json:
        if failures is not None:
            info["failure_list"] = failures
        echo_json(info)
        return
    click.echo(f"index:     {info['index']}")
    click.echo(f"model:     {info['model_description'] or '(none yet)'}"
               + (f", {info['model']['embed_dim']}-d" if info["model"] else ""))
    click.echo(f"items:     {info['items']} ({info['embedded']} embedded, {info['pending']} pending, "
               f"{info['failed']} failed; {info['deleted']} deleted kept as history)")
    click.echo(f"contents:  {info['distinct_contents']} distinct embeddings")
    for reason, n in sorted(info["failures_by_reason"].items(), key=lambda kv: -kv[1]):
        click.echo(f"  failed: {n:>7}  {reason}")
    vectors = info["vectors"]
    if vectors.get("exists"):
        click.echo(f"vectors:   {vectors.get('count', '?')} in {vectors.get('kind', '?')}, "
                   f"{vectors.get('bytes', 0) / 1e6:.1f} MB")
    else:
        click.echo("vectors:   (not built yet)")
    click.echo(f"catalog:   {info['catalog_bytes'] / 1e6:.1f} MB")
    for failure in failures or []:
        detail = f" ({failure['detail']})" if failure["detail"] else ""
        click.echo(f"  {failure['reason']:<18} {failure['path']}{detail}")


@main.command(context_settings=CONTEXT)
@click.option("--bundled-only", is_flag=True, help="Only the models shipped with indexer (no open_clip import).")
@json_option
def models(bundled_only: bool, as_json: bool) -> None:
    """List the models one can choose with --model (bundled ones first, with their cards).

    \b
    Example:
      indexer models --json
    """
    from .models import list_models

    entries = list_models(include_pretrained=not bundled_only)
    if as_json:
        echo_json(entries)
        return
    for entry in entries:
        if entry["source"] == "bundled":
            card = entry["card"]
            click.echo(f"{entry['name']:<28} bundled   {card.get('description', '')[:60]}")
        else:
            click.echo(f"{entry['name']:<28} --pretrained {entry['pretrained']}")


def _calibration(value: Optional[str]) -> Any:
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter("a number, or 'auto'", param_hint="--calibration") from None


@main.command("eval", context_settings=CONTEXT)
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@click.option("--templates", type=click.Choice(["none", "default", "ensemble"]), default="default", show_default=True,
              help="Prompt templates for the class names, as in classify.")
@click.option("--mapping", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Class names for folder names: JSON {folder: name} or CSV lines folder,name "
                   "(default: the folder name with _ as spaces).")
@click.option("--unseen", "unseen_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file of class names (one per line) the model never saw in training: adds GZSL figures.")
@click.option("--calibration", help="Calibrated stacking for GZSL: a constant subtracted from seen-class scores, "
                                    "or 'auto' (two-fold cross-validated).")
@index_option
@model_options
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@json_option
def evaluate_command(dataset: Path, templates: str, mapping: Optional[Path], unseen_file: Optional[Path],
                     calibration: Optional[str], index_dir: Path, model: Optional[str], pretrained: Optional[str],
                     weights: Optional[str], device: Optional[str], progress: Optional[bool], as_json: bool) -> None:
    """Measure zero-shot accuracy of the index's model on a labelled dataset.

    DATASET is a folder with one sub-folder per class (class name = folder name with _ as spaces) or
    a CSV of path,label. Its pictures are ingested into the index (incrementally), then classified
    over all the class names at once. Reports top-1/top-5 accuracy, mean per-class recall, a
    per-class table and the costliest confusions; with --unseen, the generalized zero-shot figures
    S, U and H = 2SU/(S+U), with and without calibrated stacking, and classic ZSL accuracy.

    \b
    Example:
      indexer eval ./heldout --index ./eval-index --model tiny-shapes --unseen unseen.txt --calibration auto
    """
    from .evaluate import evaluate, read_mapping

    calibration_value = _calibration(calibration)
    unseen = None
    if unseen_file is not None:
        unseen = [line.strip() for line in unseen_file.read_text(encoding="utf-8").splitlines()
                  if line.strip() and not line.startswith("#")]
    names = read_mapping(mapping) if mapping else None
    with open_from_cli(index_dir, model, pretrained, weights, device, create=True) as index:
        report = evaluate(index, dataset, templates, unseen, calibration_value, names, progress_enabled(progress))
    if as_json:
        echo_json(report.to_dict())
        return
    click.echo(f"{report.images} images, {report.classes} classes, templates '{report.templates}'"
               + (f", {report.unreadable} unreadable" if report.unreadable else ""))
    click.echo(f"top-1 {report.top1:.1%}   top-5 {report.top5:.1%}   mean per-class recall "
               f"{report.mean_per_class_recall:.1%}")
    if report.gzsl:
        g = report.gzsl
        u = g["uncalibrated"]
        click.echo(f"GZSL ({g['seen_classes']} seen, {g['unseen_classes']} unseen classes): S {u['seen_accuracy']:.1%}"
                   f"  U {u['unseen_accuracy']:.1%}  H {u['harmonic_mean']:.3f};  ZSL (unseen labels only) "
                   f"{g['zsl_unseen_accuracy']:.1%}; unseen pictures labelled seen: {g['unseen_predicted_as_seen']:.1%}")
        if "calibrated" in g:
            c = g["calibrated"]
            constant = c.get("constant", c.get("constants"))
            click.echo(f"calibrated stacking ({c['method']}, constant {constant}): S {c['seen_accuracy']:.1%}  "
                       f"U {c['unseen_accuracy']:.1%}  H {c['harmonic_mean']:.3f}")
    click.echo("\nper class (recall, most confused with):")
    for row in sorted(report.per_class, key=lambda r: r["recall"]):
        click.echo(f"  {row['recall']:>6.1%}  {row['class']:<28} {row['most_confused_with'] or ''}")
    if report.confusions:
        click.echo("\ncostliest confusions:")
        for c in report.confusions:
            click.echo(f"  {c['images']:>4}  {c['true']} -> {c['predicted']}")

@main.command(context_settings=CONTEXT)
@click.option("--dir", "folder", default="indexer-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the sample pictures (photos/) and the index (index/).")
@click.option("--per-class", default=5, show_default=True, type=click.IntRange(1, 200),
              help="Pictures drawn per (colour, shape) class; there are 48 classes.")
@click.option("--seed", default=2026, show_default=True, type=int, help="Seed of the picture generator.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when a terminal).")
@json_option
def demo(folder: Path, per_class: int, seed: int, progress: Optional[bool], as_json: bool) -> None:
    """Run the whole pipeline offline on a freshly drawn sample collection.

    Draws pictures of coloured shapes, ingests them with the bundled tiny-shapes model, runs a few
    searches and classifies the collection into 48 classes, 12 of which the model never saw in
    training (zero-shot). Takes well under a minute on a laptop CPU.

    \b
    Example:
      indexer demo --dir ./indexer-demo
    """
    from .demo import run_demo

    say = err if as_json else click.echo
    figures = run_demo(folder, per_class=per_class, seed=seed, say=say, progress=progress_enabled(progress))
    if as_json:
        echo_json(figures)
