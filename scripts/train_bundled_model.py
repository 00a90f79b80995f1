#!/usr/bin/env python
"""Train the bundled ``tiny-shapes`` CLIP on procedurally drawn shapes, on the CPU.

A one-off: the result ships inside the package (``indexer/models/bundled/tiny-shapes/``) and CI only
loads and evaluates it. The run is reproducible: the picture pool and every step's batch and
captions come from generators seeded by ``--seed`` (and the step number), so a run that is
interrupted and resumed with ``--resume`` draws the same batches as one that was not.

    python scripts/train_bundled_model.py --steps 4000            # ~1.5-2 h on two quiet cores
    python scripts/train_bundled_model.py --steps 4000 --resume   # go on after an interruption

What it does:
  1. renders a pool of pictures of the *seen* (colour, shape) classes (``indexer.synthetic``);
  2. prunes open_clip's BPE vocabulary to the merges the captions and prompt templates use, so the
     token-embedding table has ~1k rows instead of 49,408 (the checkpoint stays a few MB);
  3. trains an open_clip CLIP (registered custom config: ModifiedResNet image tower, small text
     transformer) with open_clip's own ``ClipLoss``; captions are re-drawn every step;
  4. evaluates on a held-out set rendered with another seed, all 48 classes in one 48-way task, and
     exports an fp16 ``open_clip_config.json`` + safetensors folder that ``local-dir:`` loading reads.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import regex
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import open_clip  # noqa: E402
from open_clip.loss import ClipLoss  # noqa: E402
from open_clip.tokenizer import SimpleTokenizer  # noqa: E402
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES  # noqa: E402

from indexer import synthetic  # noqa: E402

IMAGE_SIZE = 64
MEAN = np.array(open_clip.OPENAI_DATASET_MEAN, dtype=np.float32)
STD = np.array(open_clip.OPENAI_DATASET_STD, dtype=np.float32)
# Words a user is likely to type in a query for this model, beyond the captions themselves.
EXTRA_WORDS = "shape shapes colour color coloured colored picture pictures photo image drawing of on in with and a an the"


# ---------------------------------------------------------------- vocabulary pruning


def all_caption_texts() -> list[str]:
    """Every caption the training can draw, plus the ImageNet prompt templates over all 48 classes."""
    rng = np.random.default_rng(0)
    texts = {EXTRA_WORDS}
    for label in synthetic.ALL_CLASSES:
        colour, shape = label.split(" ", 1)
        texts.update(t(label) for t in OPENAI_IMAGENET_TEMPLATES)
        for size in ("small", "medium", "large"):
            for background in ("plain", "gradient", "striped", "checkered", "noisy"):
                drawing = synthetic.Drawing(colour, shape, size, background)
                for _ in range(40):
                    texts.add(synthetic.caption(rng, drawing))
    return sorted(texts)


def merges_used(texts: list[str], tokenizer: SimpleTokenizer) -> list[tuple[str, str]]:
    """The BPE merges that tokenising ``texts`` applies, in the original rank order.

    Greedy BPE applies, at each step, the lowest-ranked merge present in the word. Keeping only the
    merges that fired (with their relative order) therefore reproduces the same pieces for these
    texts, and any other word still tokenises (down to single bytes at worst).
    """
    ranks = tokenizer.bpe_ranks
    used: set[tuple[str, str]] = set()
    for text in texts:
        cleaned = tokenizer.clean_fn(text)
        for token in regex.findall(tokenizer.pat, cleaned):
            symbols = [tokenizer.byte_encoder[b] for b in token.encode("utf-8")]
            symbols[-1] = symbols[-1] + "</w>"
            while len(symbols) > 1:
                pairs = {(symbols[i], symbols[i + 1]) for i in range(len(symbols) - 1)}
                best = min(pairs, key=lambda p: ranks.get(p, math.inf))
                if best not in ranks:
                    break
                used.add(best)
                merged: list[str] = []
                i = 0
                while i < len(symbols):
                    if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                        merged.append(symbols[i] + symbols[i + 1])
                        i += 2
                    else:
                        merged.append(symbols[i])
                        i += 1
                symbols = merged
    return sorted(used, key=lambda p: ranks[p])


def write_pruned_bpe(path: Path, texts: list[str]) -> SimpleTokenizer:
    full = SimpleTokenizer()
    merges = merges_used(texts, full)
    # No trailing newline: it would become an empty merge.
    body = "#version: pruned for tiny-shapes\n" + "\n".join(" ".join(m) for m in merges)
    path.write_bytes(gzip.compress(body.encode("utf-8"), mtime=0))
    pruned = SimpleTokenizer(bpe_path=str(path))
    # The pruned tokenizer must give the same pieces as the full one on every training text.
    full_to_pruned = {full.encoder[piece]: pruned.encoder[piece] for piece in pruned.encoder}
    for text in texts:
        a = [full_to_pruned[t] for t in full.encode(text)]
        assert a == pruned.encode(text), text
    return pruned


# ---------------------------------------------------------------- data


def _render_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    seed, start, count = args
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    attributes = np.empty((count, 4), dtype=np.int8)
    sizes, backgrounds = ("small", "medium", "large"), ("plain", "gradient", "striped", "checkered", "noisy")
    for i, (image, drawing) in enumerate(synthetic.iter_drawings(seed * 1_000_003 + start, count, synthetic.SEEN_CLASSES, IMAGE_SIZE)):
        images[i] = np.asarray(image)
        attributes[i] = (
            synthetic.COLOURS.index(drawing.colour),
            synthetic.SHAPES.index(drawing.shape),
            sizes.index(drawing.size),
            backgrounds.index(drawing.background),
        )
    return images, attributes


def render_pool(seed: int, count: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    images_file = cache / f"pool-{seed}-{count}-images.npy"
    attributes_file = cache / f"pool-{seed}-{count}-attributes.npy"
    if images_file.exists() and attributes_file.exists():
        return np.load(images_file, mmap_mode="r"), np.load(attributes_file)
    chunk = 2000
    jobs = [(seed, start, min(chunk, count - start)) for start in range(0, count, chunk)]
    started = time.time()
    with multiprocessing.Pool(max(1, (os.cpu_count() or 1))) as pool:
        parts = pool.map(_render_chunk, jobs)
    images = np.concatenate([p[0] for p in parts])
    attributes = np.concatenate([p[1] for p in parts])
    np.save(images_file, images)
    np.save(attributes_file, attributes)
    print(f"rendered a pool of {count} pictures in {time.time() - started:.0f} s", flush=True)
    return images, attributes


def to_tensor(images: np.ndarray) -> torch.Tensor:
    x = (images.astype(np.float32) / 255 - MEAN) / STD
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------- model


def model_config(vocab_size: int, width: int) -> dict:
    return {
        "embed_dim": 128,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": [1, 1, 1, 1], "width": width, "head_width": 32,
                       "patch_size": None},
        "text_cfg": {"context_length": 32, "vocab_size": vocab_size, "width": 128, "heads": 4, "layers": 3},
    }


def register_config(name: str, config: dict, folder: Path) -> None:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(config, indent=2))
    open_clip.add_model_config(path)


@torch.inference_mode()
def evaluate(model, tokenizer, images: np.ndarray, labels: list[str]) -> dict:
    """48-way zero-shot accuracy with the prompt "a {label}", split by seen and unseen classes."""
    model.eval()
    classes = list(synthetic.ALL_CLASSES)
    text = model.encode_text(tokenizer([f"a {c}" for c in classes]), normalize=True)
    feats = torch.cat([model.encode_image(to_tensor(images[i:i + 256]), normalize=True)
                       for i in range(0, len(images), 256)])
    predicted = (feats @ text.T).argmax(dim=1).tolist()
    unseen_ids = [classes.index(c) for c in synthetic.UNSEEN_CLASSES]
    zsl = (feats @ text[unseen_ids].T).argmax(dim=1).tolist()
    hits_seen, hits_unseen, hits_zsl, n_seen, n_unseen = 0, 0, 0, 0, 0
    colour_hits = shape_hits = 0
    for p, z, label in zip(predicted, zsl, labels):
        guess = classes[p]
        colour_hits += guess.split()[0] == label.split()[0]
        shape_hits += guess.split()[1] == label.split()[1]
        if label in synthetic.UNSEEN_CLASSES:
            n_unseen += 1
            hits_unseen += guess == label
            hits_zsl += synthetic.UNSEEN_CLASSES[z] == label
        else:
            n_seen += 1
            hits_seen += guess == label
    s, u = hits_seen / n_seen, hits_unseen / n_unseen
    model.train()
    return {
        "seen_top1": round(s, 4), "unseen_top1": round(u, 4),
        "harmonic_mean": round(2 * s * u / (s + u), 4) if s + u else 0.0,
        "zsl_unseen_top1": round(hits_zsl / n_unseen, 4),
        "colour_accuracy": round(colour_hits / len(labels), 4), "shape_accuracy": round(shape_hits / len(labels), 4),
    }


def export(model, config: dict, bpe_file: Path, out: Path, card: dict) -> None:
    """Writes the fp16 checkpoint folder; integer buffers stay integers."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    tmp = out / "open_clip_model.safetensors.tmp"
    save_file(state, str(tmp))
    os.chmod(tmp, 0o644)  # safetensors creates it private; a package file must be readable by all
    os.replace(tmp, out / "open_clip_model.safetensors")
    (out / "bpe_simple_vocab_pruned.txt.gz").write_bytes(bpe_file.read_bytes())
    preprocess = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
                  "interpolation": "bicubic", "resize_mode": "shortest"}
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": preprocess}, indent=2))
    (out / "model_card.json").write_text(json.dumps(card, indent=2))


# ---------------------------------------------------------------- training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=150)
    parser.add_argument("--width", type=int, default=24, help="ModifiedResNet base width")
    parser.add_argument("--pool", type=int, default=150_000, help="pictures pre-rendered for training")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(__file__).resolve().parent / ".cache")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "indexer/models/bundled/tiny-shapes")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--time-steps", type=int, default=0, help="only time this many steps, then exit")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.cache.mkdir(parents=True, exist_ok=True)
    started = time.time()

    texts = all_caption_texts()
    bpe_file = args.cache / "bpe_simple_vocab_pruned.txt.gz"
    tokenizer = write_pruned_bpe(bpe_file, texts)
    tokenizer.context_length = 32
    print(f"vocabulary: {tokenizer.vocab_size} tokens ({len(texts)} texts checked)", flush=True)

    config = model_config(tokenizer.vocab_size, args.width)
    register_config("tiny-shapes-train", config, args.cache)
    model = open_clip.create_model("tiny-shapes-train", pretrained=None)
    model = model.to(memory_format=torch.channels_last)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params / 1e6:.2f} M", flush=True)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    loss_fn = ClipLoss()

    images, attributes = render_pool(args.seed, args.pool, args.cache)
    held_rng = np.random.default_rng(args.seed + 10_000)
    held_images, held_labels = [], []
    for label in synthetic.ALL_CLASSES:
        colour, shape = label.split(" ", 1)
        for _ in range(20):
            held_images.append(np.asarray(synthetic.render(held_rng, colour, shape, IMAGE_SIZE)[0]))
            held_labels.append(label)
    held = np.stack(held_images)

    state_file = args.cache / f"train-state-{args.seed}.pt"
    log_file = args.cache / f"train-log-{args.seed}.jsonl"
    start_step, train_seconds = 0, 0.0
    if args.resume and state_file.exists():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, train_seconds = state["step"], state["train_seconds"]
        print(f"resumed at step {start_step}", flush=True)

    caption_tokens: dict[str, torch.Tensor] = {}
    sizes, backgrounds = ("small", "medium", "large"), ("plain", "gradient", "striped", "checkered", "noisy")
    history = []
    step_started = time.time()
    for step in range(start_step, args.steps):
        rng = np.random.default_rng([args.seed, step])
        picks = np.sort(rng.choice(len(images), size=args.batch_size, replace=False))
        batch = np.asarray(images[picks])
        # Label-preserving variety: flips and quarter turns (every class is rotation-invariant in kind).
        if rng.uniform() < 0.5:
            batch = batch[:, :, ::-1]
        batch = np.rot90(batch, k=int(rng.integers(4)), axes=(1, 2))
        captions = []
        for c, s, z, b in attributes[picks]:
            drawing = synthetic.Drawing(synthetic.COLOURS[c], synthetic.SHAPES[s], sizes[z], backgrounds[b])
            captions.append(synthetic.caption(rng, drawing, OPENAI_IMAGENET_TEMPLATES))
        missing = [c for c in set(captions) if c not in caption_tokens]
        if missing:
            for c, t in zip(missing, tokenizer(missing)):
                caption_tokens[c] = t
        text = torch.stack([caption_tokens[c] for c in captions])

        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        image_features, text_features, logit_scale = model(to_tensor(batch), text)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

        if args.time_steps and step - start_step + 1 >= args.time_steps:
            per_step = (time.time() - step_started) / args.time_steps
            print(f"{per_step:.2f} s/step at batch {args.batch_size}, width {args.width}")
            return
        if (step + 1) % 25 == 0:
            print(f"step {step + 1}/{args.steps} loss {loss.item():.3f} lr {lr:.2e} "
                  f"scale {logit_scale.item():.1f} {(time.time() - step_started) / (step + 1 - start_step):.2f} s/step",
                  flush=True)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            train_seconds += time.time() - step_started
            step_started = time.time()
            figures = evaluate(model, tokenizer, held, held_labels)
            figures.update(step=step + 1, loss=round(loss.item(), 4), train_seconds=round(train_seconds))
            history.append(figures)
            print(json.dumps(figures), flush=True)
            with log_file.open("a") as f:
                f.write(json.dumps(figures) + "\n")
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                        "train_seconds": train_seconds}, str(state_file) + ".tmp")
            os.replace(str(state_file) + ".tmp", state_file)
            card = {
                "name": "tiny-shapes",
                "description": "A small CLIP trained by scripts/train_bundled_model.py on procedurally drawn "
                               "coloured shapes (indexer.synthetic). For offline use, tests and demos; "
                               "it knows colours and shapes, nothing else.",
                "architecture": "open_clip CLIP: ModifiedResNet image tower (layers [1,1,1,1], width "
                                f"{args.width}, {IMAGE_SIZE} px), 3-layer text transformer (width 128), embed dim 128",
                "parameters": n_params,
                "colours": list(synthetic.COLOURS),
                "shapes": list(synthetic.SHAPES),
                "classes": list(synthetic.ALL_CLASSES),
                "unseen_classes": list(synthetic.UNSEEN_CLASSES),
                "seen_classes": list(synthetic.SEEN_CLASSES),
                "training": {
                    "script": "scripts/train_bundled_model.py",
                    "loss": "open_clip.loss.ClipLoss", "optimizer": "AdamW (betas 0.9/0.98, wd 0.1)",
                    "lr": args.lr, "warmup_steps": args.warmup, "schedule": "cosine",
                    "steps": step + 1, "planned_steps": args.steps, "batch_size": args.batch_size,
                    "pool_pictures": args.pool, "seed": args.seed, "threads": args.threads,
                    "train_seconds": round(train_seconds), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                    "torch": torch.__version__, "open_clip": open_clip.__version__,
                    "captions": "re-drawn every step from indexer.synthetic templates, a third of them "
                                "from CLIP's 80 ImageNet prompt templates",
                },
                "tokenizer": {"bpe": "bpe_simple_vocab_pruned.txt.gz", "vocab_size": tokenizer.vocab_size,
                              "context_length": 32},
                "evaluation": {"held_out": f"{len(held_labels)} pictures, 20 per class, seed {args.seed + 10_000}, "
                                          "one 48-way task, prompt 'a {label}'", **figures},
            }
            export(model, config, bpe_file, args.out, card)
    print(f"done in {time.time() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
