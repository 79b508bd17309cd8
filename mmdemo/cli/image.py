"""`python -m mmdemo caption | rank-captions | index build | search | search-texts`: the Image tab from a terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mmdemo.cli.common import (index_build_dirs, print_json, print_search_line, recall_target, registry_from,
                               task_command, warn)
from mmdemo.errors import MMDemoError
from mmdemo.models.decode_options import METHODS


def cmd_caption(args) -> int:
    from mmdemo.tasks.image import caption_image

    captioner = registry_from(args).for_slot("captioner")
    rows, failed = [], 0
    for img in args.images:
        try:
            res = caption_image(img, captioner, method=args.method, num_beams=args.beams, max_length=args.max_length,
                                temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                num_captions=args.num, seed=args.seed)
        except MMDemoError as exc:
            if exc.code == "decode_option_invalid":
                raise  # the same for every image: stop at once
            failed += 1
            rows.append({"image": img, "error": str(exc)})
            if not args.json:
                print(f"error: {exc}", file=sys.stderr)
            continue
        rows.append({"image": img, "captions": res.captions, "notices": res.notices})
        if not args.json:
            warn(res.notices)
            if len(res.captions) == 1:
                print(f"{img}: {res.captions[0]}")
            else:
                print(f"{img}:")
                for c in res.captions:
                    print(f"  - {c}")
    if args.json:
        print_json(rows)
    return 2 if failed else 0


def cmd_rank_captions(args) -> int:
    from mmdemo.tasks.image import rank_captions

    clip = registry_from(args).for_slot("clip")
    res = rank_captions(args.image, args.captions or None, clip)
    if args.json:
        print_json({"image": args.image, "ranked": res.ranked, "notices": res.notices})
        return 0
    warn(res.notices)
    shown = res.ranked[: args.top]
    source = "the built-in caption bank" if not args.captions else f"{len(res.ranked)} caption(s)"
    print(f"{args.image}: best of {source}")
    for r in shown:
        print(f"  {r['score']:7.2%}  {r['label']}  (similarity {r['similarity']:.3f})")
    return 0


def cmd_index_build(args) -> int:
    # Items keep absolute paths: the app that serves the index may run from another folder.
    args.sources = [s if "://" in str(s) else os.path.abspath(s) for s in args.sources]
    if args.engine == "ray":
        return _index_build_ray(args)
    from mmdemo.tasks.index_sources import LIST_SUFFIXES, TABLE_SUFFIXES

    listed = [s for s in args.sources
              if Path(s).suffix.lower() in (*LIST_SUFFIXES, *TABLE_SUFFIXES) and Path(s).is_file()]
    if listed:
        raise MMDemoError("index_option_invalid", f"{Path(listed[0]).name}: lists of paths and Parquet tables of "
                                                  "URIs are read by --engine ray (pip install -r "
                                                  "requirements-ray.txt). Without it, give folders, zips or files.")
    ray_only = [flag for flag, value in (("--address", args.address), ("--shards-dir", args.shards_dir),
                                         ("--workers", args.workers)) if value is not None]
    if ray_only:
        raise MMDemoError("index_option_invalid", f"{', '.join(ray_only)} only apply with --engine ray.")
    if args.max_files is None:
        from mmdemo.tasks.image import MAX_GALLERY_FILES

        args.max_files = MAX_GALLERY_FILES
    try:
        return _index_build_local(args)
    except MMDemoError as exc:
        if exc.code != "too_many_files":
            raise
        raise MMDemoError("too_many_files", f"{exc} From the command line: raise --max-files (it is "
                                            f"{args.max_files}), or index a large image gallery with --engine "
                                            "ray.") from None


def _index_build_local(args) -> int:
    if args.modality == "audio":  # sounds: one item per window (mmdemo.cli.audio)
        from mmdemo.cli.audio import index_build_sounds

        return index_build_sounds(args)
    from mmdemo.tasks.image import build_gallery

    clip = registry_from(args).for_slot("clip")
    out, extract_dir, cache_dir = index_build_dirs(args)
    gallery = build_gallery(args.sources, clip, cache_dir=cache_dir, extract_dir=extract_dir,
                            max_files=args.max_files)
    gallery.index.target_recall = args.target_recall
    gallery.index.save(out)
    captioned = sum(1 for it in gallery.index.items if it.get("caption"))  # from captions.json files
    report = {"index": str(out), "model_id": gallery.model_id, "images": len(gallery), "encoded": gallery.encoded,
              "cached": len(gallery) - gallery.encoded, "captioned": captioned,
              "search": gallery.index.info(), "notices": gallery.notices}
    if args.json:
        print_json(report)
        return 0
    warn(gallery.notices)
    print(f"Indexed {len(gallery)} image(s) with {gallery.model_id} into {out} "
          f"({gallery.encoded} encoded, {len(gallery) - gallery.encoded} from the cache; "
          f"{captioned} with a caption from captions.json).")
    print_search_line(out)
    return 0


def _index_build_ray(args) -> int:
    """`index build --engine ray`: a large image gallery on Ray Data (mmdemo.tasks.ray_indexing)."""
    from mmdemo.tasks.ray_indexing import EncoderSettings, build_index_ray

    if getattr(args, "modality", "image") != "image":
        raise MMDemoError("ray_modality_unsupported", "--engine ray indexes images only; index sounds without "
                                                      "--engine ray (in this process).")
    out, extract_dir, _ = index_build_dirs(args)  # no embedding cache: the shards are Ray's cache
    try:
        report = build_index_ray(args.sources, out, address=args.address, shards_dir=args.shards_dir,
                                 target_recall=args.target_recall,
                                 workers=args.workers, batch_size=args.batch_size, max_files=args.max_files,
                                 extract_dir=extract_dir,
                                 settings=EncoderSettings(args.profile, args.device,
                                                          str(args.catalog) if args.catalog else None))
    except KeyboardInterrupt:
        raise MMDemoError("index_build_stopped", "Stopped. The shards written so far are kept: run the same "
                                                 "command again to resume.") from None
    if args.json:
        print_json(report)
        return 0
    warn(report["notices"])
    print(f"Indexed {report['images']:,} image(s) with {report['model_id']} into {out} on Ray in "
          f"{report['seconds']:.1f} s: {report['shards']} shard(s), {report['shards_skipped']} already done, "
          f"{report['encoded']:,} image(s) encoded by {report['workers']} worker(s) "
          f"({report['images_per_s']:.1f} images/s); {report['captioned']:,} with a caption from captions.json.")
    print_search_line(out)
    return 0


def cmd_search(args) -> int:
    from mmdemo.tasks.saved_index import open_index, summary

    saved = open_index(args.index)  # memory-mapped: a search reads what it needs, never the whole file
    if saved.modality == "audio":
        from mmdemo.cli.audio import search_saved_sounds

        return search_saved_sounds(args, saved)
    from mmdemo.tasks.image import saved_gallery, search_images

    clip = registry_from(args).for_slot("clip")
    gallery = saved_gallery(saved)
    res = search_images(gallery, args.text, clip, k=args.k)  # refuses an index from another model first
    if args.json:
        print_json({"query": args.text, "images": len(gallery), "index": {**saved.info, "path": str(saved.path)},
                    "hits": res.hits, "notices": res.notices})
        return 0
    warn(res.notices)
    print(f"Searching {summary(saved)}")
    print(f"{len(gallery):,} image(s) searched for {args.text!r}:")
    for i, h in enumerate(res.hits, 1):
        caption = f"  “{h['caption']}”" if h.get("caption") else ""
        print(f"  {i}. {h['score']:.3f}  {h['label']}{caption}")
    return 0


def cmd_search_texts(args) -> int:
    from mmdemo.tasks.image import search_texts

    clip = registry_from(args).for_slot("clip")
    res = search_texts(args.image, args.texts, clip, k=args.k)
    if args.json:
        print_json({"image": args.image, "hits": res.hits, "notices": res.notices})
        return 0
    warn(res.notices)
    print(f"Texts closest to {args.image}:")
    for i, h in enumerate(res.hits, 1):
        print(f"  {i}. {h['score']:.3f}  {h['label']}")
    return 0


def register(sub) -> None:
    from mmdemo.index.ann import TARGET_RECALL
    from mmdemo.index.store import MODALITIES
    from mmdemo.tasks.ray_indexing import DEFAULT_BATCH_SIZE as RAY_BATCH_SIZE
    from mmdemo.tasks.image import MAX_GALLERY_FILES

    with task_command(sub, "caption", cmd_caption, help="generate captions for images (CoCa decoder)") as s:
        s.add_argument("images", nargs="+", help="image files (PNG, JPEG, GIF, WebP, BMP, TIFF)")
        s.add_argument("--method", default="beam", choices=METHODS, help="decoding method (default beam)")
        s.add_argument("--beams", type=int, default=3, help="beam width for beam search (default 3)")
        s.add_argument("--num", type=int, default=1, help="captions per image (default 1)")
        s.add_argument("--max-length", type=int, default=20, help="most words per caption (default 20)")
        s.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (top_k/top_p)")
        s.add_argument("--top-k", type=int, default=10, help="top-k sampling: keep this many words (default 10)")
        s.add_argument("--top-p", type=float, default=0.9,
                       help="top-p sampling: keep this much probability (default 0.9)")
        s.add_argument("--seed", type=int, default=0, help="random seed for sampling (default 0)")

    with task_command(sub, "rank-captions", cmd_rank_captions,
                      help="rank candidate captions for an image (CLIP zero-shot)") as s:
        s.add_argument("image", help="an image file")
        s.add_argument("captions", nargs="*", help="candidate captions (none: the built-in caption bank)")
        s.add_argument("--top", type=int, default=10, help="how many to print (default 10; --json prints all)")

    s = sub.add_parser("index", help="build a searchable image or sound index")
    isub = s.add_subparsers(dest="index_command", required=True)
    with task_command(isub, "build", cmd_index_build,
                      help="embed a folder, a zip or image files into an index file (.npz)") as b:
        b.add_argument("sources", nargs="+", help="folders, zips or image files (sound files with --modality audio)")
        b.add_argument("--modality", choices=MODALITIES, default="image",
                       help="what to index: images with the clip model (default), or sounds, window by window, "
                            "with the audio model; the app's --gallery-index routes the file by it")
        b.add_argument("--out", required=True, type=Path, help="index file to write, e.g. gallery.npz")
        b.add_argument("--cache-dir", type=Path,
                       help="embedding cache folder (default: the user cache, ~/.cache/mmdemo)")
        b.add_argument("--max-files", type=int,
                       help=f"most images to index (default {MAX_GALLERY_FILES}; no limit with --engine ray)")
        b.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: in this process (default); ray: on Ray Data, for large image galleries, "
                            "resumable (needs pip install -r requirements-ray.txt). With ray, SOURCES may also be "
                            "lists of paths (.txt, one a line) and Parquet tables with a 'uri' or 'path' column")
        b.add_argument("--address", help="--engine ray: the cluster, 'auto' or ray://host:port (default: start "
                                         "Ray on this machine)")
        b.add_argument("--shards-dir", type=Path,
                       help="--engine ray: where the encoded shards go; a re-run skips those already there "
                            "(default: OUT's name + '-shards', beside it)")
        b.add_argument("--workers", type=int, help="--engine ray: encoder actors (default: one per GPU of the "
                                                   "cluster, else one per CPU)")
        b.add_argument("--batch-size", type=int, default=RAY_BATCH_SIZE,
                       help=f"--engine ray: images per encoder call (default {RAY_BATCH_SIZE})")
        b.add_argument("--target-recall", type=recall_target, default=TARGET_RECALL,
                       help=f"large indexes (HNSW, IVF-PQ): the recall@10 their search is tuned for on held-out "
                            f"items, in (0, 1] (default {TARGET_RECALL}); higher is slower")

    with task_command(sub, "search", cmd_search, help="search a saved image or sound index by text") as s:
        s.add_argument("index", help="an index file from `index build`")
        s.add_argument("text", help="what to look for, e.g. 'a red star'")
        s.add_argument("-k", "--k", type=int, default=5, help="how many results (default 5)")

    with task_command(sub, "search-texts", cmd_search_texts, help="rank texts by how well they match an image") as s:
        s.add_argument("image", help="an image file")
        s.add_argument("texts", nargs="+", help="texts to rank")
        s.add_argument("-k", "--k", type=int, default=5, help="how many results (default 5)")
