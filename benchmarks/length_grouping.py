"""Speed of length-grouped batches vs. plain shuffled batches, measured in the same run.

Trains the same T5 student for the same number of steps on the built-in d2t task, once with
plain shuffling and once with length grouping, and prints tokens of padding and the time
ratio. Usage: python -m benchmarks.length_grouping [--steps 40] [--tiny]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench.data import encode
from bench.distill.losses import CrossEntropy
from bench.distill.loop import train
from bench.distill.methods import Source
from bench.distill.streams import Stream
from bench.models import build_model, config_from_spec
from bench.spec import ModelSpec, TrainSpec
from bench.tokenizer import train_tokenizer
from tasks import SplitSizes, get_task


class PlainStream(Stream):
    """The same stream without length grouping (the baseline)."""

    def set_block(self, n: int) -> None:
        self.block = 0
        self._reshuffle()


def padding_fraction(stream: Stream, batch: int, batches: int) -> float:
    real = padded = 0
    for _ in range(batches):
        ex = stream.take(batch)
        src, tgt = [len(e.source) for e in ex], [len(e.target) + 1 for e in ex]
        real += sum(src) + sum(tgt)
        padded += max(src) * batch + max(tgt) * batch
    return 1 - real / padded


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run (for tests)")
    args = ap.parse_args(argv)
    if args.tiny:
        args.steps, args.batch_size = 3, 8
    torch.set_num_threads(1)
    task = get_task("d2t")
    rows = task.build(SplitSizes(labeled=2000, unlabeled=0, dev=1, test=1, teacher_pool=0), 0).splits["labeled"]
    with tempfile.TemporaryDirectory() as d:
        tok = train_tokenizer([r["source"] for r in rows] + [r["target"] for r in rows], 2000, Path(d))
    inputs = encode(tok, [r["source"] for r in rows], task.max_source_tokens)
    targets = [[t] for t in encode(tok, [r["target"] for r in rows], task.max_target_tokens, add_eos=False)]
    config = config_from_spec(ModelSpec(d_model=64, ffn_dim=256), tok)
    spec = TrainSpec(steps=args.steps, batch_size=args.batch_size, warmup_steps=1, dev_every=0, select="last",
                     checkpoint_every=0)
    timings = {}
    for name, cls in (("plain shuffle (baseline)", PlainStream), ("length-grouped", Stream)):
        probe = cls(Source("gold"), inputs, targets, seed=0)
        probe.set_block(args.batch_size)
        pad = padding_fraction(probe, args.batch_size, 50)
        start = time.perf_counter()
        train(build_model(config, 0), [cls(Source("gold"), inputs, targets, seed=0)], [(CrossEntropy(), 1.0)],
              spec, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, max_target=task.max_target_tokens,
              device="cpu")
        timings[name] = time.perf_counter() - start
        print(f"{name:26s} padding {pad:6.1%}  {args.steps} steps in {timings[name]:.1f}s")
    base, new = timings["plain shuffle (baseline)"], timings["length-grouped"]
    print(f"speed-up of length grouping: {base / new:.2f}x")


if __name__ == "__main__":
    main()
