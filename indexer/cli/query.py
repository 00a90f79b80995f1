"""``indexer search``, ``indexer classify`` and ``indexer eval``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import click

from .common import CONTEXT, echo_json, err, results, index_option, json_option, model_options, open_from_cli, \
    progress_bars, progress_enabled, progress_option, safe, templates_option, where_option


@click.command(context_settings=CONTEXT)
@click.argument("query", required=False)
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Query image (reverse image search); repeatable, and combinable with QUERY.")
@click.option("-k", "--top-k", "k", default=10, show_default=True, type=click.IntRange(1), help="Number of results.")
@click.option("--path-filter", help="Only paths containing this text, or matching this glob (*, ?, [..]).")
@click.option("--min-score", type=float, help="Only results with a cosine score at least this.")
@where_option
@click.option("--hybrid", is_flag=True, help="Also rank the query's words over captions and file names (full "
                                             "text) and fuse both rankings (reciprocal rank fusion).")
@index_option
@model_options
@json_option
def search(query: Optional[str], images: tuple[Path, ...], k: int, path_filter: Optional[str],
           min_score: Optional[float], where: Optional[str], hybrid: bool, index_dir: Path, as_json: bool,
           **model: Any) -> None:
    """Find the images that best match a text and/or an image.

    QUERY is text; join terms with ' + ' and ' - ' to add or subtract them, and weight a term with
    'W:term'. A term naming an image file searches by that image.

    \b
    Examples:
      indexer search "a dog on a beach" --index ./photos-index -k 20
      indexer search "dog + beach - people" --index ./photos-index
      indexer search "2:red fox + snow" --index ./photos-index --min-score 0.2
      indexer search --image query.jpg --index ./photos-index --path-filter "*/2024/*"
      indexer search "a dog" --index ./photos-index --where "taken >= 2024-06 and camera ~ canon"
      indexer search "red fox" --index ./photos-index --hybrid --json
    """
    if not query and not images:
        raise click.UsageError("give a QUERY text, an --image, or both")
    with open_from_cli(index_dir, **model) as index:
        hits = index.search(query, images, k=k, path_filter=path_filter, min_score=min_score, where=where,
                            hybrid=hybrid)
    if as_json:
        echo_json([hit.to_dict() for hit in hits])
        return
    if not hits:
        err("no results")
    for hit in hits:
        extra = f"  (+{len(hit.duplicates)} duplicate{'s' if len(hit.duplicates) > 1 else ''})" if hit.duplicates else ""
        caption = f"  {safe(hit.caption[:80])!r}" if hit.caption else ""
        click.echo(f"{hit.score:.4f}  {safe(hit.path)}{extra}{caption}")


@click.command(context_settings=CONTEXT)
@click.option("--labels", help="Comma-separated labels, e.g. 'cat,dog,bird'.")
@click.option("--labels-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A text file with one label per line (# comments allowed).")
@templates_option
@click.option("--top-k", default=1, show_default=True, type=click.IntRange(1), help="Labels kept per image.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write predictions to a .csv (path,label,score,label_2,score_2,...) or .jsonl file.")
@click.option("--no-store", is_flag=True, help="Do not keep the predictions in the catalog.")
@click.option("--head", help="Score with this stored head (indexer heads list) instead of plain cosine; the labels "
                             "default to the head's classes.")
@click.option("--transductive", is_flag=True, help="Classify the whole collection at once, label-free: a mixture "
              "fitted to its stored embeddings refines plain zero-shot; guarded, it falls back to plain zero-shot "
              "where it has little to work with (few items, few labels present).")
@where_option
@index_option
@model_options
@progress_option
@json_option
def classify(labels: Optional[str], labels_file: Optional[Path], templates: str, top_k: int, output: Optional[Path],
             no_store: bool, head: Optional[str], transductive: bool, where: Optional[str], index_dir: Path,
             progress: Optional[bool],
             as_json: bool, **model: Any) -> None:
    """Classify every image of the index into one of a set of labels (zero-shot).

    Uses the stored embeddings only: no image is read again, and label embeddings are cached, so
    trying another label set takes seconds. Predictions are also kept in the catalog.

    \b
    Examples:
      indexer classify --index ./photos-index --labels "cat,dog,bird" --output labels.csv
      indexer classify --index ./photos-index --labels-file species.txt --templates ensemble --top-k 3 --json
      indexer classify --index ./photos-index --head shapes --output labels.csv
      indexer classify --index ./photos-index --labels-file species.txt --transductive
    """
    from contextlib import ExitStack

    from ..query.labels import read_labels
    from ..query.output import Fanout, JsonArrayStream, PredictionWriter, TsvStream, output_format

    if transductive and head is not None:
        raise click.UsageError("--transductive scores by the labels' text embeddings; it does not take --head")
    label_list = read_labels(labels, labels_file) if labels or labels_file or head is None else None
    if output is not None:
        output_format(output)  # refuse a bad extension before any work
    with open_from_cli(index_dir, **model) as index, ExitStack() as stack:
        sinks: list[Any] = []
        if label_list is None:
            label_list = index.head(head).classes
        if output is not None:
            sinks.append(stack.enter_context(PredictionWriter(output, min(top_k, len(label_list)))))
        stream = JsonArrayStream(results()) if as_json else None
        if stream is not None:
            sinks.append(stream)
        elif output is None:
            sinks.append(TsvStream(sys.stdout, escape=safe))
        bars = stack.enter_context(progress_bars(progress_enabled(progress)))
        total = index.count_embedded()
        result = index.classify(label_list, templates, top_k, on_predictions=Fanout(sinks), store=not no_store,
                                progress=lambda n: bars("classifying", n, total), head=head,
                                transductive=transductive, where=where)
        if stream is not None:
            stream.close()
    counts = ", ".join(f"{label}: {n}" for label, n in sorted(result.counts.items(), key=lambda kv: -kv[1]))
    if result.transductive is not None:
        err(_transductive_line(result.transductive))
    err(f"classified {result.items} images over {len(label_list)} labels" + (f" with head {head!r}" if head else "")
        + f" in {result.seconds:.2f} s ({counts})"
        + (f"; wrote {output}" if output else ""))


def _transductive_line(guard: dict[str, Any]) -> str:
    if guard.get("used"):
        return (f"transductive: used ({guard['changed']:.1%} of the answers differ from plain zero-shot's)")
    return f"transductive: fell back to plain zero-shot: {guard.get('reason')}"


def _calibration(value: Optional[str]) -> Any:
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter("a number, or 'auto'", param_hint="--calibration") from None


@click.command("eval", context_settings=CONTEXT)
@click.argument("dataset", type=click.Path(exists=True, path_type=Path))
@templates_option
@click.option("--mapping", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Class names for folder names: JSON {folder: name} or CSV lines folder,name "
                   "(default: the folder name with _ as spaces).")
@click.option("--unseen", "unseen_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file of class names (one per line) the model never saw in training: adds GZSL figures.")
@click.option("--calibration", help="Calibrated stacking for GZSL: a constant subtracted from seen-class scores, "
                                    "or 'auto' (two-fold cross-validated).")
@click.option("--head", help="Score with this stored head instead of plain cosine; --unseen defaults to its unseen "
                             "classes.")
@click.option("--compare", is_flag=True, help="Add a table: plain cosine, calibrated stacking, transductive and "
                                              "every stored head, on the same pictures (GZSL figures).")
@click.option("--transductive", is_flag=True, help="Classify the dataset as one collection, label-free: a mixture "
              "fitted to its stored embeddings refines plain zero-shot; guarded, it falls back to plain zero-shot "
              "where it has little to work with (few items, few labels present).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Also write DIR/eval.html (figures, per-class recall and confusion plots, tables; one offline "
                   "file) and DIR/eval.json.")
@index_option
@model_options
@progress_option
@json_option
def evaluate_command(dataset: Path, templates: str, mapping: Optional[Path], unseen_file: Optional[Path],
                     calibration: Optional[str], head: Optional[str], compare: bool, transductive: bool,
                     report_dir: Optional[Path], index_dir: Path, progress: Optional[bool], as_json: bool,
                     **model: Any) -> None:
    """Measure zero-shot accuracy of the index's model on a labelled dataset.

    DATASET is a folder with one sub-folder per class (class name = folder name with _ as spaces) or
    a CSV of path,label. Its pictures are first ingested into the index (incrementally: nothing is
    read twice), then classified over all the class names at once. Reports top-1/top-5 accuracy, mean
    per-class recall, a per-class table and the costliest confusions; with --unseen, the generalized
    zero-shot figures S, U and H = 2SU/(S+U), with and without calibrated stacking, and classic ZSL
    accuracy. S and U are average per-class accuracies (the protocol's); per-picture ones are in --json.

    \b
    Examples:
      indexer eval ./heldout --index ./eval-index --model tiny-shapes --unseen unseen.txt --calibration auto
      indexer eval ./heldout --index ./eval-index --head shapes --compare
      indexer eval ./heldout --index ./eval-index --unseen unseen.txt --transductive
    """
    from ..query.evaluate import dataset_sources, load_dataset
    from ..query.labels import read_class_list, read_mapping
    from .ingest import summary_line

    if transductive and head is not None:
        raise click.UsageError("--transductive scores by the labels' text embeddings; it does not take --head")
    calibration_value = _calibration(calibration)
    if report_dir is not None:  # refused before any work is done
        try:
            report_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.BadParameter(f"cannot create {report_dir}: {exc.strerror or exc}", param_hint="--report")
    unseen = read_class_list(unseen_file, "--unseen file") if unseen_file is not None else None
    names = read_mapping(mapping) if mapping else None
    sources = dataset_sources(dataset, load_dataset(dataset, names))
    with open_from_cli(index_dir, create=True, **model) as index:
        err(f"ingesting {dataset} into {index.path} first (only what the index does not hold yet)")
        with progress_bars(progress_enabled(progress)) as bars:
            err("  " + summary_line(index.ingest(sources, progress=bars, warn=lambda message: None)))
        report = index.evaluate(dataset, templates, unseen, calibration_value, names, head=head, compare=compare,
                                transductive=transductive)
    if report_dir is not None:
        from ..query.eval_report import write_eval_report

        err(f"report: {write_eval_report(report, report_dir)}")
    if as_json:
        echo_json(report.to_dict())
        return
    scorer = f"head '{safe(head)}'" if head else f"templates '{report.templates}'"
    click.echo(f"{report.images} images, {report.classes} classes, {scorer}"
               + (f", {report.unreadable} unreadable" if report.unreadable else ""))
    click.echo(f"top-1 {report.top1:.1%}   top-5 {report.top5:.1%}   mean per-class recall "
               f"{report.mean_per_class_recall:.1%}")
    if "transductive" in report.extra:
        click.echo(_transductive_line(report.extra["transductive"]))
    if report.extra.get("head", {}).get("warning"):
        err("warning: " + safe(report.extra["head"]["warning"]))
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
    if compare:
        _print_comparison(report.to_dict()["comparison"])
    click.echo("\nper class (recall, most confused with):")
    for row in sorted(report.per_class, key=lambda r: r["recall"]):
        click.echo(f"  {row['recall']:>6.1%}  {safe(row['class']):<28} {safe(row['most_confused_with'] or '')}")
    if report.confusions:
        click.echo("\ncostliest confusions:")
        for c in report.confusions:
            click.echo(f"  {c['images']:>4}  {safe(c['true'])} -> {safe(c['predicted'])}")


def _print_comparison(rows: list[dict[str, Any]]) -> None:
    click.echo("\nmethods on the same pictures (S, U: average per-class accuracy; H = 2SU/(S+U)):")
    click.echo(f"  {'method':<22} {'head':<16} {'S':>6} {'U':>6} {'H':>6} {'ZSL':>6}")
    for row in rows:
        name = safe(row["head"] or "")
        if "skipped" in row:
            click.echo(f"  {row['method']:<22} {name:<16} skipped: {safe(row['skipped'])}")
            continue
        click.echo(f"  {row['method']:<22} {name:<16} {row['seen_accuracy']:>6.3f} {row['unseen_accuracy']:>6.3f} "
                   f"{row['harmonic_mean']:>6.3f} {row['zsl_unseen_accuracy']:>6.3f}"
                   + (f"  ({safe(row['warning'])})" if "warning" in row else ""))
