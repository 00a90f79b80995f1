"""``indexer audit``: likely mislabels, duplicates, outliers and label-set problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click

from ..audit.core import AuditOptions
from ..errors import IndexerError
from ..models.templates import TEMPLATE_SETS
from .common import CONTEXT, echo_json, err, index_option, json_option, model_options, open_from_cli, \
    progress_bars, progress_enabled, progress_option, safe, where_option

_DEFAULTS = AuditOptions()


@click.command(context_settings=CONTEXT)
@index_option
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A CSV of path,label (an optional split column; header row optional). Relative paths are "
                   "taken below --root, else below the CSV's folder. Default: labels from folder names.")
@click.option("--from-run", help="Take each item's label from a stored `classify` run: its id, or 'latest'.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="Folder below which each picture's parent folder names its class (train/val/test folders "
                   "give the split). Default: the items' common folder.")
@click.option("--templates", type=click.Choice(TEMPLATE_SETS), default=None,
              help="Prompt templates of the labels. Default: 'default', or the run's own with --from-run.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for audit.html, findings.csv, findings.json and summary.json. Default: INDEX/audit.")
@click.option("--no-report", is_flag=True, help="Write no files: the terminal summary (or --json) only.")
@click.option("--near-threshold", type=click.FloatRange(-1.0, 1.0), default=_DEFAULTS.near_threshold,
              show_default=True, help="Cosine similarity at or above which two pictures are near duplicates.")
@click.option("--neighbours", type=click.IntRange(1, 100), default=_DEFAULTS.neighbours, show_default=True,
              help="Nearest pictures consulted per item (label vote and near-duplicate search).")
@click.option("--neighbour-weight", type=click.FloatRange(0.0, 1.0), default=_DEFAULTS.neighbour_weight,
              show_default=True, help="Share of the neighbours' label vote in the label probabilities; "
                                      "0 uses the zero-shot probabilities alone.")
@click.option("--outlier-z", type=float, default=_DEFAULTS.outlier_z, show_default=True,
              help="Robust standard deviations above its class's median k-NN distance that make an outlier.")
@click.option("--confusable-threshold", type=click.FloatRange(-1.0, 1.0), default=_DEFAULTS.confusable_threshold,
              show_default=True, help="Cosine of two labels' prompt embeddings at or above which they are confusable.")
@click.option("--min-class-size", type=click.IntRange(0), default=_DEFAULTS.min_class_size, show_default=True,
              help="Classes with fewer items are reported.")
@click.option("--max-rows", type=click.IntRange(1), default=500, show_default=True,
              help="Findings shown per section of the HTML report (the CSV and JSON hold all of them).")
@click.option("--no-thumbnails", is_flag=True, help="Leave thumbnails out of the HTML report (faster, smaller).")
@click.option("--head", help="Take the zero-shot probabilities from this stored head (indexer heads list) instead "
                             "of plain cosine; it must know every label.")
@where_option
@model_options
@progress_option
@json_option
def audit(index_dir: Path, labels_file: Optional[Path], from_run: Optional[str], root: Optional[Path],
          templates: Optional[str], output: Optional[Path], no_report: bool, near_threshold: float, neighbours: int,
          neighbour_weight: float, outlier_z: float, confusable_threshold: float, min_class_size: int, max_rows: int,
          no_thumbnails: bool, head: Optional[str], where: Optional[str], progress: Optional[bool], as_json: bool, **model: Any) -> None:
    """Find likely mislabels, duplicates, outliers and label-set problems in a labelled dataset.

    The dataset must be ingested first. Labels come from class folder names (ImageFolder layout,
    optionally under train/val/test split folders), from a CSV (--labels), or from a stored
    classify run (--from-run). Uses stored embeddings only; writes a self-contained HTML report
    with CSV and JSON of every finding, and prints a one-screen summary (or --json: every finding,
    ranked best first within its type).

    \b
    Example:
      indexer ingest ./dataset --index ./dataset-index
      indexer audit --index ./dataset-index --output ./audit-report
      indexer audit --index ./dataset-index --labels labels.csv --root ./dataset --json
      indexer audit --index ./dataset-index --from-run latest --no-report
    """
    if labels_file is not None and from_run is not None:
        raise click.UsageError("give --labels FILE or --from-run RUN, not both")
    run_id: Optional[int] = None
    if from_run is not None and from_run != "latest":
        if not from_run.isdigit():
            raise click.UsageError(f"--from-run {from_run!r}: give a run id (a number) or 'latest'")
        run_id = int(from_run)
    try:
        _run(index_dir, labels_file, from_run is not None, run_id, root, templates, output, no_report, max_rows,
             not no_thumbnails, AuditOptions(neighbours=neighbours, neighbour_weight=neighbour_weight,
                                             near_threshold=near_threshold, outlier_z=outlier_z,
                                             confusable_threshold=confusable_threshold, min_class_size=min_class_size,
                                             head=head, where=where),
             model, progress_enabled(progress),
             as_json)
    except IndexerError as exc:  # also when the command is used outside the `indexer` group
        from . import flag_of

        message = f"{flag_of(audit, exc.param)}: {exc.message}" if exc.param else str(exc)
        raise click.ClickException(safe(message)) from None


def _run(index_dir: Path, labels_file: Optional[Path], use_run: bool, run_id: Optional[int], root: Optional[Path],
         templates: Optional[str], output: Optional[Path], no_report: bool, max_rows: int, thumbnails: bool,
         options: AuditOptions, model: dict[str, Any], show_progress: bool, as_json: bool) -> None:
    from ..audit.report import write_report
    from ..audit.summary import summary_lines

    with open_from_cli(index_dir, **model) as index:
        dataset = index.audit_labels(labels_file, root, run_id, from_run=use_run)
        options.templates = templates or dataset.templates or "default"
        with progress_bars(show_progress) as bars:
            result = index.audit(dataset, options, progress=bars)
        folder = None
        if not no_report:
            folder = output if output is not None else index.path / "audit"
            write_report(result, folder, max_rows=max_rows, thumbnails=thumbnails)
    lines = summary_lines(result, report=folder)
    if as_json:
        echo_json([finding.to_dict() for finding in result.findings])
        for line in lines:
            err(line)
    else:
        click.echo("\n".join(safe(line) for line in lines))
