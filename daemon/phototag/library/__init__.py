"""The library index and what reads it: search, similar photos, undo."""
