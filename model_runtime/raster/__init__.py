"""Rasters, from the paths a user names to the tiles an encoder reads and their footprints:
source -> check -> open -> tiles -> footprints, one module per step.

- ``refs``: what identifies a source without reading it (``SourceRef``, URI forms, signature).
- ``sources``: which sources the named paths hold (folders walked, links and pipes skipped).
- ``stores``: the remote store of each URI scheme, made on first use from its factory.
- ``remote``: the ``s3://`` store: listing by ETag, ranged reads, ``/vsis3/`` opens.
- ``checks``: what may be read (format sniffing, VRT sources, sidecars; never the network).
- ``gdal_open``: opening with the driver the content allows, GDAL kept off the network.
- ``tiling``: windows planned over a raster and read as encoder-ready RGB tiles.
- ``geo``: coordinates and footprints checked against their CRS before any transform.
"""
