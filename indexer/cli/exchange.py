"""``indexer import`` and ``indexer export``: embeddings in and out in clip-retrieval's layout or Parquet."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click

from .common import CONTEXT, echo_json, err, index_option, json_option, model_options, open_from_cli, \
    progress_bars, progress_enabled, progress_option, safe, where_option


@click.command("import", context_settings=CONTEXT)
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--verify", type=click.IntRange(0), default=8, show_default=True,
              help="Pictures (of those whose image_path is a file here) embedded again to check that the model "
                   "made the vectors; 0 checks only the vectors' width.")
@index_option
@model_options
@progress_option
@json_option
def import_command(folder: Path, verify: int, index_dir: Path, progress: Optional[bool], as_json: bool,
                   **model: Any) -> None:
    """Register embeddings made elsewhere: a clip-retrieval output folder (img_emb/img_emb_N.npy with
    metadata/metadata_N.parquet: image_path, optional caption).

    Each row becomes an embedded item (no picture is decoded), so search, classify and audit work on it
    at once. --model must be the model that made the vectors: their width is checked, and where pictures
    are readable here, a few are embedded again and must agree (cosine >= 0.99). Needs indexer[parquet].

    \b
    Example:
      clip-retrieval inference --input_dataset images --output_folder embeddings   # elsewhere, on a GPU
      indexer import embeddings --index ./photos-index --model ViT-B-32 --pretrained openai
    """
    with open_from_cli(index_dir, create=True, **model) as index:
        with progress_bars(progress_enabled(progress)) as bars:
            summary = index.import_embeddings(folder, verify, progress=lambda n: bars("importing", n, None))  # type: ignore[arg-type]
    if as_json:
        echo_json(summary.to_dict())
        return
    skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.skipped.items()))
    check = (f"; model checked on {summary.verified} pictures (lowest cosine {summary.agreement:.4f})"
             if summary.verified else "; model checked by vector width only (no picture readable here)")
    err(f"{summary.rows} rows in {summary.parts} parts: {summary.added} items added, {summary.already} already in "
        f"the index" + (f", skipped {skipped}" if skipped else "") + check + f" in {summary.seconds:.1f} s")


@click.command("export", context_settings=CONTEXT)
@click.option("--format", "format_", type=click.Choice(["clip-retrieval", "parquet"]), default="clip-retrieval",
              show_default=True, help="clip-retrieval: a folder of img_emb/*.npy (float16) and metadata/*.parquet; "
                                      "parquet: one table of path, metadata and vector.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The folder (clip-retrieval) or .parquet file to write.")
@click.option("--part-size", type=click.IntRange(1), default=1_000_000, show_default=True,
              help="Rows per img_emb_N.npy part (clip-retrieval).")
@where_option
@index_option
@model_options
@progress_option
@json_option
def export_command(format_: str, output: Path, part_size: int, where: Optional[str], index_dir: Path,
                   progress: Optional[bool], as_json: bool, **model: Any) -> None:
    """Write the index's embeddings for other tools: autofaiss and clip-retrieval's back end read the
    clip-retrieval layout, dataframe tools the Parquet table. Stored embeddings only; needs
    indexer[parquet].

    \b
    Examples:
      indexer export --index ./photos-index --format clip-retrieval -o ./embeddings
      indexer export --index ./photos-index --format parquet -o photos.parquet --where "taken >= 2024"
    """
    if format_ == "parquet" and output.is_dir():
        raise click.BadParameter(f"{safe(str(output))} is a folder; give a .parquet file", param_hint="--output")
    if format_ == "clip-retrieval" and output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise click.BadParameter(f"{safe(str(output))} exists and is not an empty folder", param_hint="--output")
    with open_from_cli(index_dir, **model) as index:
        total = index.count_embedded()
        with progress_bars(progress_enabled(progress)) as bars:
            summary = index.export_embeddings(output, format_, part_size, where,
                                              progress=lambda n: bars("exporting", n, total))
    if as_json:
        echo_json(summary.to_dict())
        return
    err(f"wrote {summary.rows} embeddings of width {summary.dim} to {safe(str(output))} ({summary.format}, "
        f"{summary.parts} part{'s' if summary.parts != 1 else ''}) in {summary.seconds:.1f} s")
