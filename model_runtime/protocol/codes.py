"""Error codes and types: every ``error.code`` a response may carry, with its type and meaning."""

from __future__ import annotations

# --- errors --------------------------------------------------------------------------------------
#: every ``error.type`` a response may carry; ``runtime`` is the client's own (no worker)
ERROR_TYPES = (
    "protocol",
    "data",
    "config",
    "model_mismatch",
    "index",
    "cancelled",
    "disk_full",
    "confirm",
    "internal",
    "runtime",
)

#: every ``error.code``: code -> (type, what it means). Clients word errors from the code.
ERROR_CODES: dict[str, tuple[str, str]] = {
    # protocol: the request itself is malformed
    "bad_json": ("protocol", "the line is not a JSON object"),
    "bad_request": ("protocol", "id, op or params are missing or of the wrong kind"),
    "unknown_op": ("protocol", "the op is not one the worker knows"),
    "bad_param": ("protocol", "a parameter is missing, unknown, of the wrong type or out of range"),
    "duplicate_id": ("protocol", "a request with this id is already in flight"),
    # data: an input is missing or unreadable
    "data_unreadable": ("data", "an input file cannot be read"),
    "file_not_found": ("data", "a file or folder does not exist"),
    "not_a_raster": ("data", "a file is not a raster GDAL can read"),
    "source_refused": ("data", "a raster refers to a network or outside source (refused)"),
    "source_gone": ("data", "the raster a tile came from is gone"),
    "tile_not_found": ("data", "no tile with this id in the index"),
    "bad_coordinates": ("data", "a point or box is outside what its CRS can express"),
    "heads_unreadable": ("data", "a hash-heads file is missing or not a heads file"),
    "image_unreadable": ("data", "a query image cannot be read"),
    "no_tiles": ("data", "nothing in the given folders could be indexed"),
    "remote_denied": ("data", "object storage refused the credentials (or they are missing)"),
    "remote_unreachable": ("data", "the object-storage endpoint cannot be reached"),
    # config: an option is wrong
    "bad_value": ("config", "an option has an invalid value"),
    "unknown_crs": ("config", "a CRS is not known"),
    "unknown_backbone": ("config", "no backbone config of this name"),
    "no_heads": ("config", "no shipped heads for this backbone and bit length"),
    "backend_unavailable": ("config", "the inference backend or device is not available"),
    "extra_missing": ("config", "an optional part is not installed (torch in the lean runtime, "
                      "openvino, boto3 for s3://, ray, a weights package)"),
    "cluster_unreachable": ("config", "the Ray cluster at --ray-address cannot be reached"),
    # model_mismatch: an index or heads file belongs to another model
    "model_mismatch": ("model_mismatch", "the index or heads were made for another model"),
    # index: an index is missing or not usable now
    "index_missing": ("index", "no index in this folder"),
    "index_empty": ("index", "the index holds no model yet (nothing was indexed)"),
    "index_incomplete": ("index", "an indexing run was interrupted; run it again to finish"),
    "index_corrupt": ("index", "the index database is damaged"),
    "index_newer": ("index", "the index was written by a newer version"),
    "index_locked": ("index", "another indexing run is writing this index"),
    "index_readonly": ("index", "the index is read-only: it can be searched, not changed"),
    "index_needs_rebuild": ("index", "the index lacks what this op needs; re-index with rebuild"),
    # refined searches kept as files (saved_search.py)
    "saved_search_invalid": ("data", "a saved search file is damaged or not one"),
    "saved_search_mismatch": ("model_mismatch", "a saved search was made with another backbone "
                              "or heads whose feature projection this index does not share"),
    # the rest
    "cancelled": ("cancelled", "the user cancelled"),
    "disk_full": ("disk_full", "the disk is full; nothing half-written was kept"),
    "confirm_large_run": ("confirm", "the run is large; send it again with confirm"),
    "confirm_retile": ("confirm", "another tiling re-tiles every folder of the index; send it "
                       "again with confirm, or leave the tiling options out"),
    "internal": ("internal", "a bug: the message names the exception"),
    "worker_unavailable": ("runtime", "the runtime process is not running or stopped"),
}


def error_type_of(code: str) -> str:
    """The ``error.type`` of a code (``internal`` for an unknown one)."""
    return ERROR_CODES.get(code, ("internal", ""))[0]
