"""Errors that are the user's to fix: the CLI prints them in one line, the server answers 4xx."""


class UserError(ValueError):
    """Bad input from a user (file, option, request parameter); the message says what and why."""


class NotFoundError(UserError):
    """A named thing (image id, model, strategy, version) does not exist: HTTP 404."""
