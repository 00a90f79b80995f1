"""``indexer status``, ``indexer models`` and ``indexer demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from .common import CONTEXT, echo_json, echo_lines, index_option, json_option, open_from_cli, progress_bars, \
    progress_enabled, progress_option, safe


@click.command(context_settings=CONTEXT)
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
    click.echo(f"index:     {safe(info['index'])}")
    click.echo(f"model:     {safe(info['model_description'] or '(none yet)')}"
               + (f", {info['model']['embed_dim']}-d" if info["model"] else ""))
    click.echo(f"items:     {info['items']} ({info['embedded']} embedded, {info['pending']} pending, "
               f"{info['failed']} failed; {info['deleted']} deleted kept as history)")
    click.echo(f"contents:  {info['distinct_contents']} distinct embeddings")
    if info["runtimes"]:
        click.echo("embedded by: " + ", ".join(f"{name} ({entry['embedded']})"
                                             for name, entry in sorted(info["runtimes"].items())))
    if info["int8"]:
        int8 = info["int8"]
        figures = (f"; recall@10 {int8['recall_at_10']}, cosine mean {int8['cosine_mean']} on {int8['held_out']} "
                   "held-out pictures") if "recall_at_10" in int8 else ""
        click.echo(f"int8:      {'chosen' if int8['chosen'] == 'int8' else 'not chosen'} ({safe(int8['reason'])}{figures})")
    for reason, n in sorted(info["failures_by_reason"].items(), key=lambda kv: -kv[1]):
        click.echo(f"  failed: {n:>7}  {safe(reason)}")
    vectors = info["vectors"]
    if vectors.get("exists"):
        click.echo(f"vectors:   {vectors.get('count', '?')} in {vectors.get('kind', '?')}, "
                   f"{vectors.get('bytes', 0) / 1e6:.1f} MB")
    else:
        click.echo("vectors:   (not built yet)")
    click.echo(f"catalog:   {info['catalog_bytes'] / 1e6:.1f} MB")
    for failure in failures or []:
        detail = f" ({failure['detail']})" if failure["detail"] else ""
        click.echo(f"  {safe(failure['reason']):<18} {safe(failure['path'])}{safe(detail)}")


@click.command(context_settings=CONTEXT)
@click.option("--bundled-only", is_flag=True, help="Only the models shipped with indexer (no open_clip import).")
@json_option
def models(bundled_only: bool, as_json: bool) -> None:
    """List the models one can choose with --model (bundled ones first, with their cards).

    \b
    Example:
      indexer models --json
    """
    from ..models import list_models

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


@click.command(context_settings=CONTEXT)
@click.option("--dir", "folder", default="indexer-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the sample pictures (photos/) and the index (index/).")
@click.option("--per-class", default=5, show_default=True, type=click.IntRange(1, 200),
              help="Pictures drawn per (colour, shape) class; there are 48 classes.")
@click.option("--seed", default=2026, show_default=True, type=int, help="Seed of the picture generator.")
@progress_option
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
    from ..demo import run_demo

    say = (lambda text: echo_lines(text, err=True)) if as_json else echo_lines
    with progress_bars(progress_enabled(progress)) as bars:
        figures = run_demo(folder, say, per_class=per_class, seed=seed, progress=bars)
    if as_json:
        echo_json(figures)
