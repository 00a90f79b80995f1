"""``indexer heads``: train, list, show and delete zero-shot heads stored in the catalog."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import click

from .common import CONTEXT, echo_json, err, index_option, json_option, open_from_cli, safe, templates_option

_FILE = click.Path(dir_okay=False, exists=True, path_type=Path)


@click.group(context_settings=CONTEXT)
def heads() -> None:
    """Zero-shot heads trained on stored embeddings (projection or generative).

    A head learns from labelled items of some classes (seen) to classify all the classes of a list,
    unseen ones included, known only by their name (or an attribute vector). It is trained from the
    embeddings already in the index, in seconds on a CPU, and stored in the catalog; use it with
    `classify --head`, `eval --head` and `audit --head`.

    \b
    Examples:
      indexer heads train shapes --index ./idx --labels labelled.csv --classes classes.txt --method generative
      indexer heads list --index ./idx
      indexer eval ./heldout --index ./idx --head shapes --compare
    """


@heads.command(context_settings=CONTEXT)
@click.argument("name")
@index_option
@click.option("--labels", "labels_file", required=True, type=_FILE,
              help="A CSV of path,label: items already in the index, labelled with seen classes (relative paths "
                   "are taken below the CSV's folder).")
@click.option("--classes", "classes_file", required=True, type=_FILE,
              help="Every class the head knows, seen and unseen, one per line; those without labelled items are "
                   "its unseen classes.")
@click.option("--method", type=click.Choice(["projection", "generative"]), default="generative", show_default=True,
              help="projection: a bilinear map between embeddings and class descriptions; generative: synthetic "
                   "embeddings of unseen classes, then one classifier over all.")
@click.option("--attributes", type=_FILE,
              help="A CSV of class,number,number,... describing every class (default: the classes' prompt "
                   "text embeddings).")
@templates_option
@click.option("--generator", type=click.Choice(["gaussian", "wgan"]), default="gaussian", show_default=True,
              help="The generative method's feature generator (wgan: f-CLSWGAN, slower; see docs/guides/heads.md).")
@click.option("--unlabelled", default="all", show_default=True, metavar="all|none|PATH",
              help="Items of the index without a label whose stored embeddings refine the head (transductive): "
                   "all of them, none, or those at or below PATH (a folder, an archive or a file already "
                   "ingested). No label of theirs is read or needed; at most 20,000 are used (a seeded sample).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the training (same seed, same head).")
@click.option("--replace", is_flag=True, help="Replace a stored head of the same name.")
@json_option
def train(name: str, index_dir: Path, labels_file: Path, classes_file: Path, method: str, attributes: Optional[Path],
          templates: str, generator: str, unlabelled: str, seed: int, replace: bool, as_json: bool) -> None:
    """Train a zero-shot head NAME from labelled items already in the index, and store it.

    Hyper-parameters and the calibration constant are chosen on held-out seen classes (no unseen
    picture is needed or looked at); the choice is kept with the head (`heads show`).

    With --unlabelled (all by default) the collection's unlabelled items help: EM fits one Gaussian per
    class to their embeddings (seen classes anchored by the labelled items, unseen ones starting where
    their description puts them, plus a background for items of no listed class), moving each unseen
    class to where its pictures really are; the generative head then samples from the moved classes,
    the projection head trains on the items EM is sure of. Use it when the collection holds pictures of
    the unseen classes (that is what you want to classify); --unlabelled none trains on the labelled
    items alone. See docs/guides/heads.md, "Unlabelled items".

    \b
    Examples:
      indexer heads train shapes --index ./idx --labels labelled.csv --classes classes.txt
      indexer heads train shapes --index ./idx --labels labelled.csv --classes classes.txt --unlabelled ./inbox
    """
    from ..query.labels import read_class_list

    classes = read_class_list(classes_file, "--classes file")
    with open_from_cli(index_dir) as index:
        head = index.train_head(name, labels_file, classes, method, attributes=attributes, templates=templates,
                                seed=seed, generator=generator, replace=replace, unlabelled=unlabelled)
    if as_json:
        echo_json(head.describe())
    figures = head.figures
    helped = f", refined on {figures['unlabelled_items']} unlabelled items" if figures.get("unlabelled_items") else ""
    err(f"trained head {name!r} ({head.method}) on {figures['items']} items of {figures['seen_classes']} seen "
        f"classes for {figures['unseen_classes']} unseen ones{helped} in {figures['train_seconds']:.1f} s; "
        f"calibration {head.calibration:.3g}")
    if head.hparams.get("fallback"):
        err("warning: this head scores as " + safe(head.hparams["fallback"]))
    if figures.get("validation", {}).get("warning"):
        err("warning: " + safe(figures["validation"]["warning"]))


@heads.command("list", context_settings=CONTEXT)
@index_option
@json_option
def list_heads(index_dir: Path, as_json: bool) -> None:
    """List the heads stored in the index."""
    with open_from_cli(index_dir) as index:
        rows = index.heads()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        err("no heads stored (indexer heads train)")
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created_at"]))
        note = "" if row["usable"] else "  (another model: unusable here)"
        click.echo(f"{safe(row['name'])}  {row['method']}  {row['classes']} classes ({row['unseen_classes']} unseen)  "
                   f"{row['items']} items  {row['descriptions']}  {when}{note}")


@heads.command(context_settings=CONTEXT)
@click.argument("name")
@index_option
@json_option
def show(name: str, index_dir: Path, as_json: bool) -> None:
    """Show a stored head: classes, hyper-parameters and how they were chosen."""
    with open_from_cli(index_dir) as index:
        description = index.head(name).describe()
    if as_json:
        echo_json(description)
        return
    _print_head(description)


def _print_head(d: dict[str, Any]) -> None:
    figures = d["figures"]
    click.echo(f"{safe(d['name'])}: {d['method']} head, {d['classes']} classes, {d['dim']}-d, calibration "
               f"{d['calibration']:.4g}")
    unlabelled = figures.get("unlabelled_items", 0)
    helped = f" and {unlabelled} unlabelled items" if unlabelled else ""
    click.echo(f"trained on {figures['items']} labelled items{helped} in {figures['train_seconds']:.1f} s; "
               f"unlabelled: {safe(str(d['hparams'].get('unlabelled', 'none')))}; hyper-parameters:")
    click.echo("  " + safe(", ".join(f"{k}={v}" for k, v in sorted(d["hparams"].items()))))
    click.echo(f"seen ({len(d['seen_classes'])}): " + safe(", ".join(d["seen_classes"])))
    click.echo(f"unseen ({len(d['unseen_classes'])}): " + safe(", ".join(d["unseen_classes"])))
    validation = figures.get("validation", {})
    if validation:
        click.echo(f"chosen by: {validation['rule']}; {validation['folds']} folds, no unseen picture used")
        for row in validation["candidates"]:
            click.echo(f"  H {row['H']:.4f} (uncalibrated {row['H_uncalibrated']:.4f}, calibration "
                       f"{row['calibration']:.3g}, pseudo-unseen confidence {row['pseudo_unseen_confidence']:.3f})  "
                       + ", ".join(f"{k}={v}" for k, v in row["hparams"].items()))


@heads.command(context_settings=CONTEXT)
@click.argument("name")
@index_option
def delete(name: str, index_dir: Path) -> None:
    """Delete a stored head."""
    with open_from_cli(index_dir) as index:
        index.delete_head(name)
    err(f"deleted head {name!r}")
