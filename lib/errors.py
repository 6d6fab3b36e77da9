"""Errors the CLI prints in one line and the server answers with a 4xx or 5xx and a message.

Most are the user's to fix (a bad file, option or name); ``StorageFullError`` is the
server's (its disk is full), raised where a save is refused before anything changed.
"""


class UserError(ValueError):
    """Bad input from a user (file, option, request parameter); the message says what and why."""


class NotFoundError(UserError):
    """A named thing (image id, model, strategy, version) does not exist: HTTP 404."""


class StorageFullError(OSError):
    """The disk (or quota) is full: nothing of the request was stored. HTTP 507."""
