"""Safe loading and validation of what users upload: images, audio, text lists, zips.

Everything here treats its input as hostile: a bad upload must end in an
``MMDemoError`` whose message names the file and says what to do, never in a
crash, a hang or a server that runs out of memory. Things that are worth
telling the user but not worth refusing (an animated GIF, clipped audio, a
duplicate label) come back as ``notices`` (``Notice``, with a code) for the UI
to show as warnings.

One module per kind of input; import from here (``from mmdemo.media import load_image``).
"""

from mmdemo.media.audio import AUDIO_SUFFIXES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioClip, load_audio
from mmdemo.media.files import collect_files, fmt_bytes, read_captions, safe_extract_zip
from mmdemo.media.image import IMAGE_SUFFIXES, LoadedImage, load_image
from mmdemo.media.text import parse_text_lines

__all__ = [
    "IMAGE_SUFFIXES",
    "AUDIO_SUFFIXES",
    "MIN_SAMPLE_RATE",
    "MAX_SAMPLE_RATE",
    "LoadedImage",
    "AudioClip",
    "load_image",
    "load_audio",
    "parse_text_lines",
    "safe_extract_zip",
    "collect_files",
    "read_captions",
    "fmt_bytes",
]
