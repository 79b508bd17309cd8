"""The one exception type for problems a user can fix, and notices with codes.

An ``MMDemoError`` message says what was wrong and what to do. The UI turns it
into ``gr.Error`` and the CLI into a non-zero exit with the message; anything else
that escapes is a bug in mmdemo.

Both errors and notices carry a short machine-readable ``code`` (snake_case, e.g.
``"image_too_large"``): code that has to decide what to do with one (drop a
notice, retry with other options, log it) looks at the code, never at the text,
so a reworded message can't change behaviour.
"""

from __future__ import annotations


class MMDemoError(Exception):
    """A user-fixable problem (bad input, unknown model name, missing weights...).

    ``MMDemoError(code, message)``; ``str(exc)`` is the message alone.
    """

    def __init__(self, code: str, message: str):
        if not code or not code.replace("_", "").isalnum() or code != code.lower():
            raise ValueError(f"an MMDemoError code is snake_case, not {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # picklable across processes (e.g. a DataLoader worker)
        return (type(self), (self.code, self.message))


class Notice(str):
    """Something worth telling the user but not worth refusing (an animated GIF, a
    clipped clip, a skipped file). It *is* its text, so it prints, joins and
    compares as one; callers that decide by it use ``.code``."""

    code: str
    subject: str | None  # the file or item it is about, when there is one

    def __new__(cls, code: str, text: str, subject: str | None = None) -> "Notice":
        self = super().__new__(cls, text)
        self.code, self.subject = code, subject
        return self

    def __reduce__(self):
        return (type(self), (self.code, str(self), self.subject))

