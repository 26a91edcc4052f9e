"""The one exception type for mistakes a user can fix: a bad path, a bad file, a bad config.

The CLI turns a `UserError` into a single line on stderr and exit code 2; the Python API raises it
as is. Anything else escaping is a bug in linklm and keeps its traceback.
"""


class UserError(ValueError):
    """A problem with the user's input, described in one line that names the file or key."""
