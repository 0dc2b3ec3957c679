"""Rasters, from the paths a user names to the tiles an encoder reads and their footprints.

- ``sources``: which files and objects the named paths hold, and how each is identified and
  opened (format checks, VRT parsing, the GDAL configuration that keeps local files off the
  network).
- ``remote``: the ``s3://`` store: listing by ETag, ranged reads, ``/vsis3/`` opens.
- ``tiling``: windows planned over a raster and read as encoder-ready RGB tiles.
- ``geo``: coordinates and footprints checked against their CRS before any transform.
"""
