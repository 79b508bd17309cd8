"""`python -m mmdemo match-audio ...` and `search-audio ...`: the Audio tab from a terminal."""

from __future__ import annotations

from pathlib import Path

from mmdemo.cli.common import index_build_dirs, print_json, print_search_line, registry_from, task_command, warn


def cmd_match_audio(args) -> int:
    from mmdemo.tasks.audio import match_audio

    audio = registry_from(args).for_slot("audio")
    templates = list(args.template or [])
    if args.template_set:  # "auto": the set whose words this model's tokenizer knows
        from mmdemo.tasks import prompts

        chosen = (prompts.pick_builtin(audio, "audio") if args.template_set == "auto"
                  else prompts.builtin_set("audio", args.template_set))
        templates += chosen.templates
    m = match_audio(args.clip, args.labels, audio, templates=templates, hop_seconds=args.hop)
    if args.json:
        print_json(m.to_dict())
        return 0
    warn(m.notices)
    print(f"{m.name}: {m.duration:.1f} s, {len(m.windows)} window(s)")
    width = max(len(b["label"]) for b in m.best)
    for b in m.best:
        print(f"  {b['score']:7.2%}  {b['label']:<{width}}  best window {b['start']:.1f}-{b['end']:.1f} s"
              f"  (similarity {b['similarity']:.3f})")
    return 0


def cmd_search_audio(args) -> int:
    import tempfile

    from mmdemo.tasks.audio import build_gallery, search_gallery

    audio = registry_from(args).for_slot("audio")
    with tempfile.TemporaryDirectory(prefix="mmdemo-audio-") as tmp:
        gallery = build_gallery([args.source], audio, extract_dir=Path(tmp), hop_seconds=args.hop)
        hits = search_gallery(gallery, args.text, audio, k=args.k)
        for h in hits:
            if Path(h["path"]).is_relative_to(tmp):
                h["path"] = None  # a zip member: its extracted copy is gone when we print
    if args.json:
        print_json({"query": args.text, "sounds": len(gallery), "hits": hits, "notices": gallery.notices})
        return 0
    warn(gallery.notices)
    print(f"{len(gallery)} sound(s) searched for {args.text!r}:")
    _print_sounds(hits)
    return 0


def index_build_sounds(args) -> int:
    """`index build --modality audio`: sounds embedded window by window into an index file."""
    from mmdemo.tasks.audio import build_gallery
    from mmdemo.tasks.saved_index import sound_index

    audio = registry_from(args).for_slot("audio")
    out, extract_dir, cache_dir = index_build_dirs(args)
    gallery = build_gallery(args.sources, audio, cache_dir=cache_dir, extract_dir=extract_dir,
                            max_files=args.max_files)
    index = sound_index(gallery)
    index.target_recall = args.target_recall
    index.save(out)
    captioned = sum(1 for it in gallery.items if it.get("caption"))
    report = {"index": str(out), "model_id": gallery.model_id, "modality": "audio", "sounds": len(gallery),
              "windows": len(index), "captioned": captioned, "search": index.info(),
              "notices": gallery.notices}
    if args.json:
        print_json(report)
        return 0
    warn(gallery.notices)
    print(f"Indexed {len(gallery)} sound(s) ({len(index)} windows) with {gallery.model_id} into {out} "
          f"({captioned} with a caption from captions.json).")
    print_search_line(out)
    return 0


def search_saved_sounds(args, saved) -> int:
    """`search INDEX TEXT` on a saved audio index: one hit per sound, its best window."""
    from mmdemo.tasks.audio import search_gallery, unknown_words_notice
    from mmdemo.tasks.saved_index import summary

    audio = registry_from(args).for_slot("audio")
    hits = search_gallery(saved, args.text, audio, k=args.k)  # refuses an index from another model first
    notices = unknown_words_notice(audio, [args.text])
    if args.json:
        print_json({"query": args.text, "windows": len(saved), "index": {**saved.info, "path": str(saved.path)},
                    "hits": hits, "notices": notices})
        return 0
    warn(notices)
    print(f"Searching {summary(saved)}")
    print(f"The {len(hits)} sound(s) closest to {args.text!r}, each by its best window:")
    _print_sounds(hits)
    return 0


def _print_sounds(hits) -> None:
    for i, h in enumerate(hits, 1):
        caption = f"  “{h['caption']}”" if h["caption"] else ""
        print(f"  {i}. {h['score']:.3f}  {h['label']}  ({h['start']:.1f}-{h['end']:.1f} s){caption}")


def register(sub) -> None:
    from mmdemo.tasks.audio import HOP_SECONDS

    with task_command(sub, "match-audio", cmd_match_audio, help="rank text labels for an audio clip (zero-shot)",
                      description="Rank labels for a clip; long clips are scored window by window.") as s:
        s.add_argument("clip", help="audio file (WAV, FLAC, OGG, MP3 ...)")
        s.add_argument("labels", nargs="+", help="labels or descriptions, e.g. 'a rising chirp' 'white noise'")
        s.add_argument("--template", action="append",
                       help="prompt template with {} for the label, e.g. 'the sound of {}'; repeat to average several")
        s.add_argument("--template-set", help="add a built-in prompt ensemble: 'auto' (the one this model's "
                                              "words allow), 'tiny-world' or 'generic-audio'")
        s.add_argument("--hop", type=float, default=HOP_SECONDS, help="seconds between windows of long clips")

    with task_command(sub, "search-audio", cmd_search_audio, help="search a folder or zip of sounds by text") as s:
        s.add_argument("source", help="a folder, a zip or one audio file")
        s.add_argument("text", help="what to look for, e.g. 'a burst of white noise'")
        s.add_argument("--k", type=int, default=5, help="how many results (default 5)")
        s.add_argument("--hop", type=float, default=HOP_SECONDS, help="seconds between windows of long clips")
