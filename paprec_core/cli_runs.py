"""Placeholder: filled in by the search-run commands work."""


def register(sub) -> None:
    pass
