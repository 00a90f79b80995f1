"""Near duplicates with an adaptive threshold and perceptual hashes (made at ingest, back-filled for older
indexes), and the linear probe beside the zero-shot probabilities. Real SQLite, FAISS, the bundled model."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer import open_index, synthetic
from indexer.audit import AuditOptions, audit
from indexer.audit.dataset import csv_labels
from indexer.audit.probe import RidgeProbe, _softmax
from indexer.media.phash import hamming, perceptual_hash

CLASSES = ("red square", "red star", "green circle", "green triangle", "blue square", "blue cross",
           "yellow circle", "yellow star", "purple triangle", "orange hexagon", "white star", "black circle")


def near_copy(path: Path, target: Path) -> None:
    with Image.open(path) as image:
        small = image.convert("RGB").resize((round(image.width * 0.8), round(image.height * 0.8)),
                                            Image.Resampling.BICUBIC)
    small.save(target, "JPEG", quality=80)


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> dict:
    """12 classes x 10 pictures, 3 near copies (0.8x, JPEG 80) and 2 exact copies under their own label."""
    root = tmp_path_factory.mktemp("near")
    rendered = synthetic.write_labelled_folder(root / "data", 10, CLASSES, seed=8, size=96)
    rng = np.random.default_rng(1)
    chosen = [rendered[i][0] for i in rng.choice(len(rendered), 5, replace=False)]
    pairs = []
    for n, source in enumerate(chosen):
        if n < 3:
            target = source.with_name(source.stem + "_near.jpg")
            near_copy(source, target)
        else:
            target = source.with_name(source.stem + "_copy.png")
            shutil.copy(source, target)
        pairs.append({str(source), str(target)})
    index = root / "index"
    with open_index(index, model="tiny-shapes") as ix:
        ix.ingest([root / "data"])
    return {"root": root, "index": index, "pairs": pairs, "rendered": rendered}


def test_hash_tells_a_re_encoded_copy_from_another_picture(copies):
    source = Path(sorted(next(iter(p for p in copies["pairs"] if any(q.endswith(".jpg") for q in p))))[0])
    with Image.open(source) as a, Image.open(source.with_name(source.stem + "_near.jpg")) as b:
        same = hamming(np.array([perceptual_hash(a.convert("RGB"))]), np.array([perceptual_hash(b.convert("RGB"))]))
    others = [perceptual_hash(Image.open(p).convert("RGB")) for p, _ in copies["rendered"][:40]]
    distances = hamming(np.array(others[:-1]), np.array(others[1:]))
    assert same[0] <= 8 < distances.min()


def test_ingest_stores_a_hash_per_content(copies):
    with sqlite3.connect(copies["index"] / "catalog.sqlite") as conn:
        total, hashed = conn.execute("SELECT count(*), count(phash) FROM embeddings").fetchone()
    assert total == len(copies["rendered"]) + 3 and hashed == total


def planted_found(result, pairs) -> tuple[int, int]:
    groups = [set(f.paths) for f in result.of_type("duplicate")]
    found = sum(any(p <= g for g in groups) for p in pairs)
    flagged = set().union(*groups) if groups else set()
    return found, len(flagged - set().union(*pairs))


def test_adaptive_threshold_finds_every_copy_without_a_flood(copies):
    with open_index(copies["index"]) as ix:
        result = audit(ix.context)
        fixed = audit(ix.context, options=AuditOptions(near_threshold=0.97, phash_distance=None))
    found, unplanted = planted_found(result, copies["pairs"])
    assert found == len(copies["pairs"]) and unplanted <= 2, (found, unplanted)
    assert result.near["adaptive"] and result.near["threshold"] < 1.0
    assert result.near["confirmed"] < result.near["candidates"]
    # The old fixed cosine on this model sweeps in distinct pictures.
    assert planted_found(fixed, copies["pairs"])[1] > 5 * max(unplanted, 1)


def test_an_older_index_gets_hashes_without_re_embedding(copies, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(copies["index"], index)
    with sqlite3.connect(index / "catalog.sqlite") as conn:
        conn.execute("UPDATE embeddings SET phash = NULL")
        before = conn.execute("SELECT id, sha256, vector FROM embeddings ORDER BY id").fetchall()
    with open_index(copies["index"]) as ix:
        reference = audit(ix.context)
    with open_index(index) as ix:
        result = audit(ix.context)
    assert result.near["hashes_made"] > 0
    assert [f.paths for f in result.of_type("duplicate")] == [f.paths for f in reference.of_type("duplicate")]
    with sqlite3.connect(index / "catalog.sqlite") as conn:
        after = conn.execute("SELECT id, sha256, vector FROM embeddings ORDER BY id").fetchall()
        hashed = conn.execute("SELECT count(phash) FROM embeddings").fetchone()[0]
        expected = dict(sqlite3.connect(copies["index"] / "catalog.sqlite").execute("SELECT id, phash FROM embeddings"))
        made = dict(conn.execute("SELECT id, phash FROM embeddings WHERE phash IS NOT NULL"))
    assert after == before  # no embedding made again
    assert 0 < hashed == result.near["hashes_made"] <= len(before)  # the candidates' contents, read once
    assert all(abs(int(hamming(np.array([v]), np.array([expected[k]]))[0])) <= 2 for k, v in made.items())
    with open_index(index) as ix:
        assert audit(ix.context).near["hashes_made"] == 0  # stored: the next audit reads none


def test_probe_probabilities_are_exact_leave_one_out():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    given = rng.integers(0, 4, 120)
    x = centres[given] + rng.normal(scale=1.5, size=(120, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    probe = RidgeProbe(16, 4)
    for start in range(0, 120, 50):
        probe.add(x[start:start + 50], given[start:start + 50])
    assert probe.fit()
    loo = probe.probabilities(x, given)
    for i in (0, 17, 119):
        rest = np.delete(np.arange(120), i)
        xb = np.hstack([x[rest], np.ones((119, 1))])
        w = np.linalg.solve(xb.T @ xb + probe.lam * np.eye(17), xb.T @ np.eye(4)[given[rest]])
        direct = _softmax(probe.temperature * (np.append(x[i], 1.0) @ w)[None, :])[0]
        assert loo[i] == pytest.approx(direct, abs=1e-5)


def test_the_probe_ranks_flipped_labels_higher(copies, tmp_path):
    rng = np.random.default_rng(4)
    rendered = copies["rendered"]
    flipped = set(rng.choice(len(rendered), 8, replace=False).tolist())
    lines, wrong = ["path,label"], set()
    for i, (path, label) in enumerate(rendered):
        if i in flipped:
            label = CLASSES[(CLASSES.index(label) + 1 + int(rng.integers(len(CLASSES) - 1))) % len(CLASSES)]
            wrong.add(str(path))
        lines.append(f"{path},{label}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    with open_index(copies["index"]) as ix:
        dataset = csv_labels(ix.context, labels)
        hits = {}
        for weight in (0.0, 0.35):
            result = audit(ix.context, dataset, AuditOptions(probe_weight=weight))
            hits[weight] = sum(f.path in wrong for f in result.of_type("mislabel")[:len(wrong)])
    assert hits[0.35] >= hits[0.0] and hits[0.35] >= 6, hits


def test_a_0005_catalog_upgrades_and_its_audit_fills_the_hashes(copies, tmp_path):
    from alembic import command

    from indexer.store.migrate import alembic_config
    from indexer.store.states import SCHEMA_HEAD

    index = tmp_path / "index"
    shutil.copytree(copies["index"], index)
    command.downgrade(alembic_config(f"sqlite:///{index / 'catalog.sqlite'}"), "0005_ingest_leases")
    with sqlite3.connect(index / "catalog.sqlite") as conn:
        assert "phash" not in [r[1] for r in conn.execute("PRAGMA table_info(embeddings)")]
        before = conn.execute("SELECT id, vector FROM embeddings ORDER BY id").fetchall()
    with open_index(index) as ix:  # migrated on open: the column added, every row kept
        result = audit(ix.context)
    found, _ = planted_found(result, copies["pairs"])
    assert found == len(copies["pairs"]) and result.near["hashes_made"] > 0
    with sqlite3.connect(index / "catalog.sqlite") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD
        assert conn.execute("SELECT id, vector FROM embeddings ORDER BY id").fetchall() == before


def test_audit_hashes_fills_every_missing_hash(copies, tmp_path):
    from click.testing import CliRunner

    from indexer.cli import main

    index = tmp_path / "index"
    shutil.copytree(copies["index"], index)
    with sqlite3.connect(index / "catalog.sqlite") as conn:
        expected = dict(conn.execute("SELECT id, phash FROM embeddings"))
        conn.execute("UPDATE embeddings SET phash = NULL")
    gone = Path(copies["rendered"][0][0])
    moved = tmp_path / "moved.png"
    shutil.copy(gone, moved)
    gone.unlink()  # one picture gone: counted, the rest hashed
    try:
        result = CliRunner().invoke(main, ["audit", "hashes", "--index", str(index)])
    finally:
        shutil.copy(moved, gone)
    assert result.exit_code == 0, result.output
    assert f"perceptual hashes made: {len(expected) - 1}; pictures that could not be read" in result.output
    with sqlite3.connect(index / "catalog.sqlite") as conn:
        made = dict(conn.execute("SELECT id, phash FROM embeddings WHERE phash IS NOT NULL"))
    assert len(made) == len(expected) - 1
    assert all(int(hamming(np.array([v]), np.array([expected[k]]))[0]) <= 2 for k, v in made.items())
    again = CliRunner().invoke(main, ["audit", "hashes", "--index", str(index)])
    assert again.exit_code == 0 and again.output.strip() == "perceptual hashes made: 1"  # the picture is back
