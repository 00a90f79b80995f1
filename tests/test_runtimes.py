"""The two runtimes: OpenVINO (the CPU default) agrees with torch fp32, and, once a model is converted,
queries and ingestion run without importing torch or open_clip."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from indexer import open_index, synthetic
from indexer.cli import main
from indexer.config import Settings
from indexer.errors import ConfigError, ModelError
from indexer.media.decode import decode_image
from indexer.models import ModelSpec, load_model
from indexer.models.openvino_runtime import supports_bf16

from .conftest import render_folder

BF16 = pytest.param("bf16", marks=pytest.mark.skipif(not supports_bf16(), reason="this CPU has no native bf16"))


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> ModelSpec:
    """A random-weight ViT in an open_clip folder: patch embedding, attention, class token, as real ViTs."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny-vit")
    config = {"model_cfg": {"embed_dim": 64,
                            "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32,
                                           "patch_size": 16},
                            "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 64, "heads": 2,
                                         "layers": 2}},
              "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(7)
    model = open_clip.create_model(f"local-dir:{folder}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return ModelSpec(f"local-dir:{folder}")


def pictures(size: int, count: int = 6) -> list:
    rng = np.random.default_rng(5)
    return [synthetic.render(rng, colour, shape, size)[0]
            for colour, shape in (("red", "star"), ("blue", "circle"), ("green", "cross"))] * (count // 3)


@pytest.mark.parametrize("model", ["tiny-shapes", "tiny-vit"])
@pytest.mark.parametrize("precision", ["fp32", BF16])
def test_openvino_agrees_with_torch_fp32_on_every_embedding(model, precision, tiny_vit):
    spec = ModelSpec("tiny-shapes") if model == "tiny-shapes" else tiny_vit
    reference = load_model(spec, runtime="torch")
    converted = load_model(spec, runtime="openvino", precision=precision)
    assert (reference.runtime, converted.runtime, converted.precision) == ("torch", "openvino", precision)
    assert converted.identity() == reference.identity()
    batch = np.stack([reference.preprocess(decode_image(_jpeg(p), reference.image_size).image)
                      for p in pictures(reference.image_size)])
    assert np.array_equal(batch, np.stack([converted.preprocess(decode_image(_jpeg(p), 64).image)
                                           for p in pictures(reference.image_size)]))
    texts = ["a red star", "two blue circles on grass", "", "ünïcode 🦊 漢字", "a long caption " * 20]
    expected = reference.embed_texts(texts)
    # A query's few texts run in numpy (float32, the same weights); a batch runs on OpenVINO.
    assert converted.text_numpy is not None
    in_numpy = converted.text_numpy(converted.tokenizer(texts))
    on_openvino = converted.towers.embed_texts(converted.tokenizer(texts))
    # Pixels (what ingestion sends: uint8, normalised in OpenVINO's graph or on the torch device) embed as
    # the float input does.
    pixels = np.stack([converted.preprocess.pixels(decode_image(_jpeg(p), 64).image)
                       for p in pictures(reference.image_size)])
    assert pixels.dtype == np.uint8
    assert np.allclose(reference.embed_images(pixels), reference.embed_images(batch), atol=1e-6)
    for ours, theirs in ((converted.embed_images(batch), reference.embed_images(batch)),
                         (converted.embed_images(pixels), reference.embed_images(batch)),
                         (converted.embed_texts(texts), expected), (in_numpy, expected), (on_openvino, expected)):
        cosines = np.sum(ours * theirs, axis=1)
        assert cosines.min() >= 0.999, cosines
    assert np.sum(in_numpy * expected, axis=1).min() >= 0.99999


def test_numpy_text_tower_takes_short_batches_and_openvino_the_rest(tiny_vit):
    from indexer.models import numpy_text

    converted = load_model(tiny_vit, runtime="openvino", precision="fp32")
    tower = converted.text_numpy
    few = ["a red star", "a blue circle"]
    assert tower.rows(converted.tokenizer(few)) <= numpy_text.NUMPY_TEXT_ROWS
    many = [f"a photo of thing number {i} on a table" for i in range(40)]
    assert tower.rows(converted.tokenizer(many)) > numpy_text.NUMPY_TEXT_ROWS
    assert converted._towers is None  # nothing has started OpenVINO yet: the short batch stayed in numpy
    converted.embed_texts(few)
    assert converted._towers is None
    batch = converted.embed_texts(many)
    assert converted._towers is not None  # the long batch did
    cosines = np.sum(batch * tower(converted.tokenizer(many)), axis=1)
    assert cosines.min() >= 0.9999, cosines
    # Texts of different lengths in one call: each is read at its own end, padding never leaks in.
    mixed = ["a", "a much longer description of a red star on a blue ground", "🦊"]
    together = tower(converted.tokenizer(mixed))
    alone = np.concatenate([tower(converted.tokenizer([t])) for t in mixed])
    assert np.abs(together - alone).max() < 1e-5


def test_a_process_that_keeps_asking_switches_to_the_compiled_text_tower(tiny_vit):
    from indexer.models.openvino_clip import NUMPY_CALLS_BEFORE_COMPILE

    converted = load_model(tiny_vit, runtime="openvino", precision="fp32")
    first = converted.embed_texts(["a red star"])
    for i in range(NUMPY_CALLS_BEFORE_COMPILE):
        converted.embed_texts([f"question {i}"])
    assert converted.text_compiled.wait(120), "the text tower was not compiled aside"
    assert converted._towers is not None and converted._towers.compile_seconds["text"] is not None
    again = converted.embed_texts(["a red star"])  # now from OpenVINO: the same answer within the agreement
    assert float(np.sum(first * again)) >= 0.999


def test_a_model_without_numpy_text_weights_answers_on_openvino(tiny_vit, tmp_path, monkeypatch):
    import shutil

    from indexer.models import numpy_text
    from indexer.models.openvino_clip import identity_key, openvino_cache
    from indexer.models.openvino_runtime import model_folder

    source = model_folder(openvino_cache(), identity_key(tiny_vit))
    load_model(tiny_vit, runtime="openvino", precision="fp32")
    monkeypatch.setenv("INDEXER_CACHE", str(tmp_path))
    copy = model_folder(openvino_cache(), identity_key(tiny_vit))
    shutil.copytree(source, copy)
    numpy_text.remove(copy)
    converted = load_model(tiny_vit, runtime="openvino", precision="fp32")
    assert converted.text_numpy is None
    texts = ["a red star", "two blue circles"]
    reference = load_model(tiny_vit, runtime="torch").embed_texts(texts)
    assert np.sum(converted.embed_texts(texts) * reference, axis=1).min() >= 0.999
    assert converted._towers is not None


def test_a_converted_model_removed_under_a_running_process_is_a_model_error_that_says_what_to_do(
        tiny_vit, tmp_path, monkeypatch):
    import shutil

    from indexer.models.openvino_clip import identity_key, openvino_cache
    from indexer.models.openvino_runtime import model_folder

    source = model_folder(openvino_cache(), identity_key(tiny_vit))
    load_model(tiny_vit, runtime="openvino", precision="fp32")  # converted into the shared cache if not yet
    monkeypatch.setenv("INDEXER_CACHE", str(tmp_path))
    copy = model_folder(openvino_cache(), identity_key(tiny_vit))
    shutil.copytree(source, copy)
    converted = load_model(tiny_vit, runtime="openvino", precision="fp32")  # the towers start on first use
    shutil.rmtree(copy)  # a cache cleaner, say
    with pytest.raises(ModelError, match="missing or damaged; run the command again"):
        converted.embed_images(np.zeros((1, 3, 64, 64), dtype=np.float32))


def _jpeg(picture) -> bytes:
    import io

    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


NO_TORCH = """
import sys
from indexer.cli import main
try:
    main({args!r}, standalone_mode=False)
finally:
    heavy = sorted(m for m in ("torch", "open_clip", "torchvision", "openvino", "PIL", "ftfy") if m in sys.modules)
    print("HEAVY=" + ",".join(heavy), file=sys.stderr)
"""


def run_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH.format(args=list(args))], capture_output=True, text=True,
                          timeout=600)


def test_queries_and_cpu_ingestion_never_import_torch_once_converted(tmp_path, photos):
    load_model(ModelSpec("tiny-shapes"), runtime="openvino")  # converted (with torch) here if not cached yet
    index = tmp_path / "index"
    for args in (("ingest", str(photos / "red_star"), "--index", str(index), "--model", "tiny-shapes", "--workers",
                  "1", "--no-progress"),
                 ("ingest", str(photos), "--index", str(index), "--workers", "0", "--no-progress"),
                 ("search", "a small green square never asked before", "--index", str(index)),
                 ("classify", "--labels", "red star,green square,blue circle", "--index", str(index), "--no-store")):
        done = run_without_torch(*args)
        assert done.returncode == 0, done.stderr
        # Ingestion runs the image tower on OpenVINO; a question's few texts need no runtime at all, and plain
        # words neither Pillow nor ftfy (tens of milliseconds of a query's start).
        assert done.stderr.rstrip().endswith("HEAVY=" + ("PIL,openvino" if args[0] == "ingest" else "")), done.stderr
    with open_index(index) as opened:
        assert opened.status()["runtimes"]["openvino/" + ("bf16" if supports_bf16() else "fp32")]["embedded"] == 48


def test_decode_workers_import_no_model_runtime():
    # A spawned decode worker imports the module of its target and what its arguments need, nothing else.
    code = ("import sys, indexer.ingest.pipeline, indexer.ingest.read, indexer.models.preprocess;"
            "print(sorted(m for m in ('torch', 'open_clip', 'openvino', 'faiss', 'sqlalchemy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_runtimes_within_the_agreement_may_share_an_index_and_status_shows_them(tmp_path):
    photos = tmp_path / "photos"
    render_folder(photos)
    index = tmp_path / "index"
    runner = CliRunner()
    for folder, runtime in (("red_star", "torch"), ("blue_circle", "openvino")):
        result = runner.invoke(main, ["ingest", str(photos / folder), "--index", str(index), "--model", "tiny-shapes",
                                      "--runtime", runtime, "--precision", "fp32", "--no-progress"])
        assert result.exit_code == 0, result.output
    status = runner.invoke(main, ["status", "--index", str(index)])
    assert "openvino/fp32 (4)" in status.output and "torch/fp32 (4)" in status.output
    with open_index(index) as opened:
        hits = opened.search("a red star", k=4)
    assert all("red_star" in hit.path for hit in hits)


def test_precision_and_runtime_mistakes_are_clear_errors(tmp_path, photos):
    with pytest.raises(ModelError, match="needs the OpenVINO runtime"):
        load_model(ModelSpec("tiny-shapes"), runtime="torch", precision="bf16")
    with pytest.raises(ModelError, match="runs on the CPU"):
        load_model(ModelSpec("tiny-shapes"), runtime="openvino", device="cuda")
    result = CliRunner().invoke(main, ["ingest", str(photos / "red_star"), "--index", str(tmp_path / "i"),
                                       "--model", "tiny-shapes", "--runtime", "torch", "--precision", "int8"])
    assert result.exit_code == 1 and "needs the OpenVINO runtime" in result.output


def test_int8_is_calibrated_on_the_collection_and_its_agreement_is_told(tmp_path, monkeypatch):
    pytest.importorskip("nncf", reason="int8 needs NNCF (pip install 'indexer[int8]'; part of the test extra)")
    monkeypatch.setenv("INDEXER_CACHE", str(tmp_path / "cache"))  # a fresh cache: calibration happens here
    photos = tmp_path / "photos"
    render_folder(photos, per_class=3)
    result = CliRunner().invoke(main, ["ingest", str(photos), "--index", str(tmp_path / "index"), "--model",
                                       "tiny-shapes", "--precision", "int8", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "converting tiny-shapes (bundled) for OpenVINO, once" in result.output  # the first use says so
    line = next(line for line in result.output.splitlines() if "int8 image tower calibrated" in line)
    assert "recall@10" in line and "held-out pictures" in line
    assert (tmp_path / "index" / "int8" / "image-int8.xml").is_file()  # calibrated on this collection, kept with it
    with open_index(tmp_path / "index") as opened:
        status = opened.status()
        assert any(name.startswith("openvino/int8") for name in status["runtimes"])
        figures = status["int8"]
        assert figures["chosen"] == "int8" and figures["asked"] == "int8"
        assert 0.8 <= figures["cosine_min"] <= figures["cosine_mean"] <= 1.0, figures
        assert 0.0 <= figures["recall_at_10"] <= 1.0
        assert figures["calibrated_on"] >= 1 and figures["held_out"] >= 1
        assert all("red_star" in hit.path for hit in opened.search("a red star", k=2))
    shown = CliRunner().invoke(main, ["status", "--index", str(tmp_path / "index")])
    assert "int8:      chosen" in shown.output and "recall@10" in shown.output
    # A later run on the same index uses the tower it keeps: no calibration again.
    more = tmp_path / "more"
    render_folder(more, per_class=1, seed=5)
    again = CliRunner().invoke(main, ["ingest", str(more), "--index", str(tmp_path / "index"), "--precision", "int8",
                                      "--no-progress"])
    assert again.exit_code == 0 and "calibrated" not in again.output, again.output


def test_auto_says_why_it_stayed_float_on_a_small_collection(tmp_path, monkeypatch):
    pytest.importorskip("nncf", reason="int8 needs NNCF (pip install 'indexer[int8]'; part of the test extra)")
    photos = tmp_path / "photos"
    render_folder(photos, per_class=1)
    result = CliRunner().invoke(main, ["ingest", str(photos), "--index", str(tmp_path / "index"), "--model",
                                       "tiny-shapes", "--no-progress"])
    assert result.exit_code == 0, result.output
    with open_index(tmp_path / "index") as opened:
        decision = opened.status()["int8"]
    assert decision["chosen"] in ("bf16", "fp32")
    assert "fewer than" in decision["reason"] or "no int8 units" in decision["reason"]
    assert not (tmp_path / "index" / "int8").exists()


def test_neighbour_recall_counts_shared_neighbours():
    from indexer.models.openvino_clip import neighbour_recall

    rows = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    assert neighbour_recall(rows, rows, 10) == 1.0
    shuffled = np.random.default_rng(1).normal(size=(50, 8)).astype(np.float32)
    assert neighbour_recall(rows, shuffled, 10) < 0.5  # unrelated embeddings share few neighbours
    assert 0.5 < neighbour_recall(rows, rows + 0.05 * shuffled, 10) < 1.0


def test_an_unwritable_cache_falls_back_to_torch_with_a_warning(tmp_path, monkeypatch, photos, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv("INDEXER_CACHE", str(blocked))
    with caplog.at_level("WARNING"):
        embedder = load_model(ModelSpec("tiny-shapes"))
    assert embedder.runtime == "torch"
    assert "cannot write the OpenVINO cache" in caplog.text and "running it on torch instead" in caplog.text
    with pytest.raises(ModelError, match="INDEXER_CACHE"):
        load_model(ModelSpec("tiny-shapes"), runtime="openvino")


def test_a_decode_worker_that_cannot_start_loses_nothing(tmp_path, photos, monkeypatch):
    # A worker dies before reading anything (here: a priority the system cannot take): no item is to
    # blame, so none is failed; the run reads the rest in its own process and embeds everything.
    monkeypatch.setenv("INDEXER_WORKER_NICE", "not-a-number")  # a setting that cannot be parsed: said at once
    with pytest.raises(ConfigError, match="INDEXER_WORKER_NICE"):
        Settings()
    monkeypatch.delenv("INDEXER_WORKER_NICE")
    warnings: list[str] = []
    with open_index(tmp_path / "index", model="tiny-shapes", settings=Settings(workers=1, worker_nice=1 << 40)) as index:
        summary = index.ingest([photos / "red_star", photos / "blue_circle"], warn=warnings.append)
        status = index.status()
    assert summary.embedded == 8 and summary.failed == 0
    assert status["pending"] == 0 and status["failed"] == 0
    assert any("reading the rest in this process" in w for w in warnings), warnings


def test_decode_workers_start_from_a_script_without_a_main_guard_or_from_standard_input(tmp_path, photos):
    code = (f"from indexer import open_index\n"
            f"index = open_index({str(tmp_path / 'index')!r}, model='tiny-shapes')\n"
            f"print(index.ingest([{str(photos / 'red_star')!r}]).embedded)\n")
    (tmp_path / "unguarded.py").write_text(code)
    for command, stdin in (([sys.executable, str(tmp_path / "unguarded.py")], None), ([sys.executable, "-"], code)):
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=300,
                              env=dict(__import__("os").environ, INDEXER_WORKERS="1"))
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[-1] in ("4", "0")  # 4 the first time, 0 (unchanged) the second
    with open_index(tmp_path / "index") as index:
        assert index.status()["embedded"] == 4


@pytest.mark.parametrize("bar", [0.0, 1.01], ids=["agreement-clears", "agreement-falls-short"])
def test_auto_chooses_int8_only_when_its_agreement_clears_the_bar(tmp_path, monkeypatch, bar):
    """The rule with its thresholds moved (a test collection is far below auto's 10,000 items, and the
    bundled model's figures sit between these two bars): the figures decide, the index keeps them."""
    pytest.importorskip("nncf", reason="int8 needs NNCF (pip install 'indexer[int8]'; part of the test extra)")
    from indexer.ingest import int8

    monkeypatch.setattr(int8, "AUTO_MIN_ITEMS", 10)
    monkeypatch.setattr(int8, "MIN_RECALL_AT_10", bar)
    monkeypatch.setattr(int8, "MIN_COSINE_MEAN", bar)
    photos = tmp_path / "photos"
    render_folder(photos, per_class=3)
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        if "no int8 units" in (index.context.model.embedder().int8_unavailable() or ""):
            pytest.skip("this CPU has no int8 units")
        told: list[str] = []
        index.ingest([photos], warn=told.append)
        decision = index.status()["int8"]
        runtimes = index.status()["runtimes"]
    if bar == 0.0:
        assert decision["chosen"] == "int8" and "cleared" in decision["reason"]
        assert any(name.startswith("openvino/int8") for name in runtimes)
        assert any("int8 image tower calibrated" in line for line in told)
    else:
        assert decision["chosen"] in ("bf16", "fp32") and "agreement too low" in decision["reason"]
        assert not any(name.startswith("openvino/int8") for name in runtimes)
        assert any(line.startswith("stayed ") for line in told)
    assert 0.0 <= decision["recall_at_10"] <= 1.0
    # A later run follows the recorded decision, whatever the rule would say now: no calibration again.
    monkeypatch.setattr(int8, "MIN_RECALL_AT_10", 1.01 - bar)
    monkeypatch.setattr(int8, "MIN_COSINE_MEAN", 1.01 - bar)
    more = tmp_path / "more"
    render_folder(more, per_class=1, seed=9)
    with open_index(tmp_path / "index") as index:
        told = []
        index.ingest([more], warn=told.append)
        assert index.status()["int8"]["decided"] == decision["decided"]
        assert not any("calibrated" in line or line.startswith("stayed ") for line in told)
        later = index.status()["runtimes"]
    assert set(later) == set(runtimes)


def test_the_openvino_release_read_from_its_folder_name_is_the_installed_one():
    from importlib import metadata

    from indexer.models.openvino_runtime import _openvino_version

    _openvino_version.cache_clear()
    assert _openvino_version() == metadata.version("openvino").split("-")[0]
