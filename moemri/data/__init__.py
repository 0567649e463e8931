"""The real head volumes: where they come from (`sources`) and how they are fetched (`fetch`)."""
from .fetch import cache_dir, cached_path, fetch_all, fetch_source, fetch_volume, is_cached, sha256_of
from .sources import SOURCES, DataSource, source_by_id, sources_with_role

__all__ = [
    "SOURCES",
    "DataSource",
    "cache_dir",
    "cached_path",
    "fetch_all",
    "fetch_source",
    "fetch_volume",
    "is_cached",
    "sha256_of",
    "source_by_id",
    "sources_with_role",
]
