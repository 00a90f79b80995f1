"""``indexer audit``: likely mislabels, duplicates, outliers and label-set problems."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click

from ..audit.core import AuditOptions
from ..errors import IndexerError
from ..models.templates import TEMPLATE_SETS
from .common import CONTEXT, _remember_catalog, echo_json, err, index_option, json_option, model_options, \
    open_from_cli, progress_bars, progress_enabled, progress_option, safe, where_option

_DEFAULTS = AuditOptions()


_index_for_group = click.option("--index", "index_dir", envvar="INDEXER_INDEX",
                                type=click.Path(file_okay=False, path_type=Path),
                                help="Index folder (catalog.sqlite + vectors.faiss). Also from $INDEXER_INDEX.")


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@_index_for_group
@click.option("--catalog", expose_value=False, callback=_remember_catalog, metavar="URL",
              help="Keep the catalog in this database instead of the index folder's SQLite file (needs "
                   "indexer[cluster]). Also from $INDEXER_CATALOG.")
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
@click.option("--near-threshold", default="auto", show_default=True, metavar="auto|COSINE",
              help="Cosine similarity at or above which two pictures are near-duplicate candidates; 'auto' adapts "
                   "it to the model: 1 - --near-ratio x the collection's median k-NN distance.")
@click.option("--near-ratio", type=click.FloatRange(0.0, 1.0, min_open=True), default=_DEFAULTS.near_ratio,
              show_default=True, help="With --near-threshold auto: the share of the median k-NN distance within "
                                      "which two pictures are candidates.")
@click.option("--phash-distance", default=str(_DEFAULTS.phash_distance), show_default=True, metavar="BITS|off",
              help="Bits (of 64) two candidates' perceptual hashes may differ by to be near duplicates; 'off' "
                   "takes every candidate.")
@click.option("--neighbours", type=click.IntRange(1, 100), default=_DEFAULTS.neighbours, show_default=True,
              help="Nearest pictures consulted per item (label vote and near-duplicate search).")
@click.option("--neighbour-weight", type=click.FloatRange(0.0, 1.0), default=_DEFAULTS.neighbour_weight,
              show_default=True, help="Share of the neighbours' label vote in the label probabilities; "
                                      "0 uses the zero-shot probabilities alone.")
@click.option("--probe-weight", type=click.FloatRange(0.0, 1.0), default=_DEFAULTS.probe_weight, show_default=True,
              help="Share of a linear probe's leave-one-out probabilities (learnt from the given labels on the "
                   "stored embeddings) in the label probabilities; 0 leaves it out.")
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
@click.pass_context
def audit(click_ctx: click.Context, index_dir: Optional[Path], labels_file: Optional[Path], from_run: Optional[str], root: Optional[Path],
          templates: Optional[str], output: Optional[Path], no_report: bool, near_threshold: str, near_ratio: float,
          phash_distance: str, neighbours: int,
          neighbour_weight: float, probe_weight: float, outlier_z: float, confusable_threshold: float, min_class_size: int, max_rows: int,
          no_thumbnails: bool, head: Optional[str], where: Optional[str], progress: Optional[bool], as_json: bool,
          **model: Any) -> None:
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

    Then decide on findings by their ids and write the corrected labels:

    \b
      indexer audit decide mis-1a2b3c4d5e6f accept --index ./dataset-index
      indexer audit decide dup-0f1e2d3c4b5a relabel "red star" --index ./dataset-index
      indexer audit decisions --index ./dataset-index
      indexer audit export --index ./dataset-index -o corrected.csv --drop-duplicates
    """
    if click_ctx.invoked_subcommand is not None:
        return
    if index_dir is None:
        raise click.UsageError("Missing option '--index'.")
    if labels_file is not None and from_run is not None:
        raise click.UsageError("give --labels FILE or --from-run RUN, not both")
    threshold = _near_threshold(near_threshold)
    bits = _phash_distance(phash_distance)
    run_id: Optional[int] = None
    if from_run is not None and from_run != "latest":
        if not from_run.isdigit():
            raise click.UsageError(f"--from-run {from_run!r}: give a run id (a number) or 'latest'")
        run_id = int(from_run)
    try:
        _run(index_dir, labels_file, from_run is not None, run_id, root, templates, output, no_report, max_rows,
             not no_thumbnails, AuditOptions(neighbours=neighbours, neighbour_weight=neighbour_weight, probe_weight=probe_weight,
                                             near_threshold=threshold, near_ratio=near_ratio,
                                             phash_distance=bits, outlier_z=outlier_z,
                                             confusable_threshold=confusable_threshold, min_class_size=min_class_size,
                                             head=head, where=where),
             model, progress_enabled(progress),
             as_json)
    except IndexerError as exc:  # also when the command is used outside the `indexer` group
        from . import flag_of

        message = f"{flag_of(audit, exc.param)}: {exc.message}" if exc.param else str(exc)
        raise click.ClickException(safe(message)) from None


def _near_threshold(text: str) -> Optional[float]:
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise click.BadParameter(f"{text!r}: give 'auto' or a cosine between -1 and 1", param_hint="--near-threshold")
    return value


def _phash_distance(text: str) -> Optional[int]:
    if text.strip().lower() in ("off", "none"):
        return None
    if not text.strip().isdigit() or int(text) > 64:
        raise click.BadParameter(f"{text!r}: give a number of bits from 0 to 64, or 'off'", param_hint="--phash-distance")
    return int(text)


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


def _open(index_dir: Path):
    return open_from_cli(index_dir)


def _failed(exc: IndexerError) -> click.ClickException:
    """The library's error as one line, naming the flag it is about."""
    from . import flag_of

    command = click.get_current_context().command
    return click.ClickException(safe(f"{flag_of(command, exc.param)}: {exc.message}" if exc.param else str(exc)))


@audit.command("decide", context_settings=CONTEXT)
@click.argument("finding")
@click.argument("action", type=click.Choice(("accept", "reject", "relabel", "drop")))
@click.argument("label", required=False)
@index_option
@json_option
def decide_command(finding: str, action: str, label: Optional[str], index_dir: Path, as_json: bool) -> None:
    """Record a decision on a finding of the latest audit: accept (apply its fix), reject (never raise it
    again), relabel LABEL (give its items LABEL), or drop (leave its items out of the export).

    \b
    Example:
      indexer audit decide mis-1a2b3c4d5e6f accept --index ./dataset-index
      indexer audit decide mis-1a2b3c4d5e6f relabel "red star" --index ./dataset-index
    """
    if action == "relabel" and label is None:
        raise click.UsageError("relabel needs the new label: decide ID relabel LABEL")
    if action != "relabel" and label is not None:
        raise click.UsageError(f"{action} takes no label (only relabel does)")
    try:
        with _open(index_dir) as index:
            decision = index.audit_decide(finding, action, label)
    except IndexerError as exc:
        raise _failed(exc) from None
    if as_json:
        echo_json(decision.to_dict())
    else:
        click.echo(safe(f"{decision.finding_id}: {decision.action}" + (f" {decision.label}" if decision.label else "")
                        + f" ({decision.type})"))


@audit.command("undo", context_settings=CONTEXT)
@click.argument("finding")
@index_option
def undo_command(finding: str, index_dir: Path) -> None:
    """Forget the decision on a finding."""
    try:
        with _open(index_dir) as index:
            found = index.audit_undo(finding)
    except IndexerError as exc:
        raise _failed(exc) from None
    if not found:
        raise click.ClickException(safe(f"no decision on {finding!r}; `indexer audit decisions` lists them"))
    click.echo(safe(f"{finding}: decision forgotten"))


@audit.command("decisions", context_settings=CONTEXT)
@index_option
@json_option
def decisions_command(index_dir: Path, as_json: bool) -> None:
    """List the decisions made on audit findings, oldest first."""
    try:
        with _open(index_dir) as index:
            decisions = index.audit_decisions()
    except IndexerError as exc:
        raise _failed(exc) from None
    if as_json:
        echo_json([d.to_dict() for d in decisions])
        return
    if not decisions:
        click.echo("no decisions yet; `indexer audit decide ID accept|reject|relabel LABEL|drop` records one")
    for d in decisions:
        f = d.finding
        about = f.get("path") or ", ".join(f.get("paths") or []) or " ~ ".join(f.get("labels") or []) \
            or str(f.get("label", ""))
        what = f"{f.get('given_label')} -> {f.get('suggested_label')}  " if d.type == "mislabel" else ""
        click.echo(safe(f"{d.finding_id}  {d.action}{' ' + d.label if d.label else ''}  {d.type}  {what}{about[:120]}"))


@audit.command("export", context_settings=CONTEXT)
@index_option
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="The corrected labels file to write (path,label[,split]).")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The labels to correct. Default: those the latest audit read.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path),
              help="With --labels: the folder relative paths are taken below; alone: folder-name labels below it.")
@click.option("--from-run", help="The labels of a stored classify run (its id, or 'latest').")
@click.option("--drop-duplicates", is_flag=True, help="Keep one item of each exact duplicate group.")
@json_option
def export_command(index_dir: Path, output: Path, labels_file: Optional[Path], root: Optional[Path],
                   from_run: Optional[str], drop_duplicates: bool, as_json: bool) -> None:
    """Write the corrected dataset: path,label with accepted and relabelled decisions applied and dropped
    items left out.

    \b
    Example:
      indexer audit export --index ./dataset-index -o corrected.csv --drop-duplicates
    """
    if labels_file is not None and from_run is not None:
        raise click.UsageError("give --labels FILE or --from-run RUN, not both")
    if from_run is not None and from_run != "latest" and not from_run.isdigit():
        raise click.UsageError(f"--from-run {from_run!r}: give a run id (a number) or 'latest'")
    try:
        with _open(index_dir) as index:
            dataset = None
            if labels_file is not None or root is not None or from_run is not None:
                run_id = int(from_run) if from_run not in (None, "latest") else None
                dataset = index.audit_labels(labels_file, root, run_id, from_run=from_run is not None)
            summary = index.audit_export(output, dataset, drop_duplicates=drop_duplicates)
    except IndexerError as exc:
        raise _failed(exc) from None
    line = (f"wrote {summary.rows} items to {summary.path}: {summary.relabelled} relabelled, {summary.dropped} "
            f"dropped by decisions" + (f", {summary.duplicates_dropped} duplicate copies dropped" if drop_duplicates
                                       else "") + f" ({summary.decisions} decisions applied"
            + (f"; {summary.other_labels} made on other labels not applied" if summary.other_labels else "") + ")")
    if as_json:
        echo_json(summary.to_dict())
        err(line)
    else:
        click.echo(safe(line))


@audit.command("hashes", context_settings=CONTEXT)
@index_option
@progress_option
def hashes_command(index_dir: Path, progress: Optional[bool]) -> None:
    """Make the perceptual hash of every picture ingested before hashes existed (each read and decoded
    once; no embedding is redone). An audit makes the hashes it needs by itself; with all of them, it
    also finds re-encoded copies the model puts far apart.

    \b
    Example:
      indexer audit hashes --index ./dataset-index
    """
    try:
        with _open(index_dir) as index, progress_bars(progress_enabled(progress)) as bars:
            made, unreadable = index.audit_fill_hashes(progress=bars)
    except IndexerError as exc:
        raise _failed(exc) from None
    click.echo(f"perceptual hashes made: {made}" + (f"; pictures that could not be read (gone or changed since "
                                                    f"they were embedded): {unreadable}" if unreadable else ""))
