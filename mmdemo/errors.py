"""The one exception type for problems a user can fix.

Its message says what was wrong and what to do. The UI turns it into
``gr.Error`` and the CLI into a non-zero exit with the message; anything else
that escapes is a bug in mmdemo.
"""


class MMDemoError(Exception):
    """A user-fixable problem (bad input, unknown model name, missing weights...)."""
