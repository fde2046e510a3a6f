"""Inline completion as a pipeline of pure stages: context -> prompt -> generate ->
post-process filters -> suggestion, plus the cache of suggestions the user types through."""
