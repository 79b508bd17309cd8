"""Image tab costs, each next to a baseline measured in the same run:

1. image embedding throughput of ``ClipHandle.encode_images`` (the tab's path:
   preprocessing + model) in batches vs one image per call, on the same model: the
   embedded tiny CLIP and the ViT-B-32 architecture with random weights (no download);
2. the ViT-B-32 image tower's achieved FLOP/s (FLOPs counted by
   ``torch.utils.flop_counter.FlopCounterMode``) as a share of this machine's fp32
   matrix-multiply FLOP/s (a 2048x2048 ``torch.mm``), both measured here;
Search (exact, HNSW, IVF-PQ over 10k-1M CLIP-like embeddings) is measured by
``bench/bench_ann.py``.

    python bench/bench_image.py [--quick]

Prints one JSON object. Ratios > 1 mean the first-named way is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _best_times(fns: dict, rounds: int) -> dict:
    """Fastest of ``rounds`` runs of each, alternating, so that other work on a shared
    machine (a build, a test run) slows both sides alike rather than one."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


# --------------------------------------------------------------------------- machine


def matmul_flops(n: int = 2048, runs: int = 5) -> dict:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    t = _best_times({"mm": lambda: torch.mm(a, b)}, runs)["mm"]
    return {"size": n, "dtype": "float32", "gflops": round(2 * n ** 3 / t / 1e9, 1), "torch_threads": torch.get_num_threads()}


def memory_bandwidth(mb: int = 512, runs: int = 5) -> dict:
    """Copy a large array: every byte is read once and written once."""
    import numpy as np

    src = np.ones(mb * 2 ** 20 // 4, np.float32)
    dst = np.empty_like(src)
    t = _best_times({"copy": lambda: np.copyto(dst, src)}, runs)["copy"]
    return {"array_mb": mb, "copy_gb_per_s": round(2 * src.nbytes / t / 1e9, 2),
            "note": "bytes read + bytes written per second of a numpy copy"}


# --------------------------------------------------------------------------- embedding throughput


def _scenes(n: int, px: int):
    import numpy as np
    from PIL import Image

    from mmdemo.toyworld import scenes as S

    rng = np.random.default_rng(3)
    return [Image.fromarray(S.render_scene(S.sample_scene(rng), size=px)) for _ in range(n)]


def _vit_b32_handle():
    import open_clip

    from mmdemo.models.open_clip_backend import OpenClipHandle

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)  # random weights
    model.eval()
    spec = SimpleNamespace(model_id="ViT-B-32:random", weights=None)  # no file: no familiarity beside it
    return OpenClipHandle(spec, model, preprocess, open_clip.get_tokenizer("ViT-B-32"), "cpu")


def throughput(clip, images, runs: int, batch_size: int = 64) -> dict:
    import numpy as np

    t = _best_times({"batched": lambda: clip.encode_images(images, batch_size=batch_size),
                     "single": lambda: [clip.encode_images([im]) for im in images]}, runs)
    batched, single = t["batched"], t["single"]
    same = np.allclose(clip.encode_images(images, batch_size=batch_size),
                       np.concatenate([clip.encode_images([im]) for im in images]), atol=1e-4)
    n = len(images)
    return {"images": n, "input_px": images[0].size[0], "runs": runs, "batch_size": min(batch_size, n),
            "batched_images_per_s": round(n / batched, 1), "one_at_a_time_images_per_s": round(n / single, 1),
            "speedup_batched": round(single / batched, 2), "same_embeddings": bool(same)}


def vit_analytic_flops(visual) -> int:
    """FLOPs (2 per multiply-add) of one image through an open_clip ViT image tower."""
    k = visual.conv1.kernel_size[0] * visual.conv1.kernel_size[1] * visual.conv1.in_channels
    tokens, width = visual.positional_embedding.shape
    patches = tokens - 1
    blocks = visual.transformer.resblocks
    hidden = blocks[0].mlp.c_fc.out_features
    per_block = (2 * tokens * width * 3 * width  # q, k, v
                 + 2 * 2 * tokens * tokens * width  # q.k scores and the weighted sum of v
                 + 2 * tokens * width * width  # attention output projection
                 + 2 * 2 * tokens * width * hidden)  # MLP up and down
    proj = 2 * width * visual.proj.shape[1] if visual.proj is not None else 0  # the pooled token only
    return 2 * patches * k * width + len(blocks) * per_block + proj


def vit_flops_share(clip, images, runs: int, mm_size: int = 2048) -> dict:
    """FLOPs of the image tower, and its FLOP/s (model alone, and the whole path) as a
    share of fp32 matmul FLOP/s timed in the same alternating rounds, so that other
    work on the machine weighs on both sides of the ratio alike."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    pixels = clip._pixels(images)
    # Under inference_mode nn.MultiheadAttention takes a fused fast path that
    # FlopCounterMode cannot see (a third of the FLOPs go missing); with grad
    # enabled it runs the plain ops, which do the same arithmetic.
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        clip.model.encode_image(pixels[:1])
    counted = counter.get_total_flops()
    per_image = vit_analytic_flops(clip.model.visual)
    a, b = torch.randn(mm_size, mm_size), torch.randn(mm_size, mm_size)

    def model_only():
        with torch.inference_mode():
            clip.model.encode_image(pixels)

    t = _best_times({"mm": lambda: [torch.mm(a, b) for _ in range(4)], "model": model_only,
                     "path": lambda: clip.encode_images(images, batch_size=len(images))}, runs)
    mm_gflops = 4 * 2 * mm_size ** 3 / t["mm"] / 1e9
    n = len(images)
    model_gflops = per_image * n / t["model"] / 1e9
    path_gflops = per_image * n / t["path"] / 1e9
    return {"gflops_per_image": round(per_image / 1e9, 3),
            "gflops_per_image_flop_counter": round(counted / 1e9, 3),
            "flops_note": "analytic count (2 per multiply-add, attention included); FlopCounterMode agrees "
                          "except for attention's two matmuls, which it does not see on CPU",
            "images": n, "matmul_gflops_same_rounds": round(mm_gflops, 1),
            "model_only_gflops": round(model_gflops, 1), "with_preprocessing_gflops": round(path_gflops, 1),
            "model_only_share_of_matmul": round(model_gflops / mm_gflops, 3),
            "with_preprocessing_share_of_matmul": round(path_gflops / mm_gflops, 3),
            "preprocessing_share_of_time": round(max(0.0, 1 - t["model"] / t["path"]), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer images and runs")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mmdemo.catalog import load_catalog
    from mmdemo.registry import Registry

    t0 = time.perf_counter()
    runs = 2 if args.quick else 3
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "torch": torch.__version__,
               "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
    bw = memory_bandwidth(runs=runs + 2)

    tiny = Registry(load_catalog(), device="cpu", profile="tiny").for_slot("clip")
    tiny_images = _scenes(64 if args.quick else 256, 64)
    tiny_tp = throughput(tiny, tiny_images, runs)

    vit = _vit_b32_handle()
    vit_images = _scenes(8 if args.quick else 32, 224)
    vit_tp = throughput(vit, vit_images, runs=1 if args.quick else 2)
    flops = vit_flops_share(vit, vit_images, runs=2 if args.quick else 3)
    mm = matmul_flops(runs=runs + 2)
    del vit

    print(json.dumps({"benchmark": "image", "quick": args.quick, "machine": machine, "matmul_fp32": mm,
                      "memory_bandwidth": bw,
                      "embedding_throughput": {"tiny_clip": tiny_tp, "vit_b_32_random": vit_tp},
                      "vit_b_32_flops": flops,
                      "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                      "total_s": round(time.perf_counter() - t0, 1)}, indent=2))


if __name__ == "__main__":
    main()
