"""Node providers, one module each; importing this package registers them.
`create_provider("kwok")` builds one by name."""

from spotwise.actuate.providers import karpenter, kwok, none
from spotwise.actuate.providers.base import (
    NodeProvider,
    UnknownProviderError,
    create_provider,
    provider_names,
    register,
)

__all__ = [
    "NodeProvider",
    "UnknownProviderError",
    "create_provider",
    "karpenter",
    "kwok",
    "none",
    "provider_names",
    "register",
]
