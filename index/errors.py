"""Errors raised by the index, one class per thing a caller can act on.

Every message names the input (path, directory, model) so that a CLI user can fix it without a traceback.
"""

from __future__ import annotations


class IndexStoreError(Exception):
    """Base class of every error the index raises on purpose."""


class IndexNotFoundError(IndexStoreError):
    """The directory holds no index and none can be created (no encoder was given)."""


class ModelMismatchError(IndexStoreError):
    """The index was built with another model; re-embedding needs an explicit `reindex`."""


class SettingsMismatchError(IndexStoreError):
    """Chunking settings differ from the ones the index was built with; re-chunking needs `reindex`."""


class IndexLockedError(IndexStoreError):
    """Another process holds the writer lock."""


class InconsistentIndexError(IndexStoreError):
    """The vector file and the database disagree and cannot be repaired without the model."""


class SchemaVersionError(IndexStoreError):
    """The index was written by a newer version of this package."""


class LoadError(IndexStoreError):
    """A document could not be read or parsed; the message is the reason shown in the ingest summary."""


class InvalidInputError(IndexStoreError, ValueError):
    """A bad argument: a filter, a setting, a query."""
