"""Old vs new training input pipeline on mixed-orientation photos, and NCHW vs NHWC, on CPU.

old: no orientation grouping, batches padded to multiples of 128, images resized inside the model;
new: orientation-grouped batches, padding to multiples of 32, images read at the input size in the loader.
One measurement = ``--steps`` training steps (data loading + forward + backward + SGD step) after 2
warm-up steps; the variants alternate for ``--rounds`` rounds (order flipped every round); prints the
median images/s and min..max per variant, and mean padded pixels per image.

    python benchmarks/make_mixed.py data/bccd/train data/bccd_mixed
    python benchmarks/pipeline_bench.py --data data/bccd_mixed --size 512 --threads 2
"""

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

from metaanchor.config import load_config, model_kwargs
from metaanchor.data.loader import AugmentedDataset, ResumableBatches, collate_train, load_dataset, orientation_groups
from metaanchor.families import build_detector


def variant(data: str, size: int, backbone: str, new: bool, channels_last: bool, batch: int):
    cfg = load_config(None, [f"data.train={data}", f"input.size={size}", f"input.max_size={2 * size}",
                             f"model.backbone={backbone}", f"solver.batch_size={batch}", "device=cpu",
                             "anchors.sample=false"] + (["model.fpn_channels=256"] if backbone != "tiny" else []))
    ds = load_dataset(cfg, "train", False)
    torch.manual_seed(0)
    model = build_detector("retinanet", **model_kwargs(cfg, len(ds.class_names), ds.class_names))
    model.set_channels_last(channels_last).train()
    model.batcher.size_divisible = 32 if new else 128
    model.batcher.resize_in_training = not new
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    data = AugmentedDataset(ds, 0, 0.5, 0.0, size=(size, 2 * size) if new else None)
    batches = ResumableBatches(ds, batch, 0, 10**6, 0, 0, 1, orientation_groups(ds) if new else None)
    loader = iter(DataLoader(data, batch_sampler=batches, num_workers=0, collate_fn=collate_train))
    pixels = []

    def step():
        images, targets, _ = next(loader)
        padded, _, _ = model.batcher(images)
        pixels.append(padded.shape[-2] * padded.shape[-1])
        loss = sum(model(images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step, pixels


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backbones", nargs="+", default=["tiny"])
    p.add_argument("--what", choices=["pipeline", "channels_last"], default="pipeline")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for backbone in a.backbones:
        if a.what == "pipeline":
            specs = {"old": (False, False), "new": (True, False)}
        else:
            specs = {"nchw": (True, False), "nhwc": (True, True)}
        fns = {k: variant(a.data, a.size, backbone, new, cl, a.batch) for k, (new, cl) in specs.items()}
        for fn, _ in fns.values():
            fn(), fn()  # warm-up
        ips = {k: [] for k in fns}
        for r in range(a.rounds):
            for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    fns[k][0]()
                ips[k].append(a.steps * a.batch / (time.perf_counter() - t0))
        names = list(fns)
        ratio = [x / y for x, y in zip(ips[names[1]], ips[names[0]])]
        print(f"{a.what} {backbone} {a.size}px batch {a.batch}, {a.threads} threads, "
              f"{a.rounds} rounds x {a.steps} steps:")
        for k in names:
            print(f"  {k:<5} {statistics.median(ips[k]):.2f} img/s (min {min(ips[k]):.2f}, max {max(ips[k]):.2f}); "
                  f"padded px/image {statistics.mean(fns[k][1]):.0f}")
        print(f"  {names[1]}/{names[0]} images/s: median {statistics.median(ratio):.2f} "
              f"(min {min(ratio):.2f}, max {max(ratio):.2f})")


if __name__ == "__main__":
    main()
