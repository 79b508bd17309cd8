"""mmdemo: `python app.py [--help]` runs the app; `gradio app.py` and Spaces find `demo`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    # Parse settings first: `--help` and bad flags answer without importing torch or gradio.
    from mmdemo.errors import MMDemoError
    from mmdemo.malloc import limit_arenas
    from mmdemo.settings import parse_settings

    limit_arenas()  # before any worker thread: a server's memory levels off (mmdemo/malloc.py)

    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except MMDemoError as exc:
        sys.exit(f"error: {exc}")
    from mmdemo.ui.app import build_demo, launch

    global demo
    try:
        demo = build_demo(settings)
    except MMDemoError as exc:
        sys.exit(f"error: {exc}")
    launch(demo, settings)


if __name__ == "__main__":
    main()
else:
    # Imported by `gradio app.py` (reload mode) or a Space runner: settings from MMDEMO_* only.
    from mmdemo.malloc import limit_arenas as _limit_arenas
    from mmdemo.settings import parse_settings as _parse

    _limit_arenas()
    from mmdemo.ui.app import build_demo as _build

    demo = _build(_parse([]))
