"""Instance catalogs: the ones built into the package and loaders for user files.

A catalog is data (types, vCPU, memory, prices, spot interruption buckets); turning it
into pools and risks is `spotwise.models.risk`'s job, not this package's.
"""

from spotwise.catalog.loaders import (
    CatalogError,
    builtin_catalog,
    builtin_catalog_names,
    load_catalog,
    load_catalog_csv,
    load_catalog_yaml,
    merge_catalog,
)

__all__ = [
    "CatalogError",
    "builtin_catalog",
    "builtin_catalog_names",
    "load_catalog",
    "load_catalog_csv",
    "load_catalog_yaml",
    "merge_catalog",
]
