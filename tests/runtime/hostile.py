"""A folder of hostile indexing inputs, and a loopback HTTP listener that records every request.

``build_hostile_folder(tmp, port)`` writes one good GeoTIFF (plus a good VRT over it) and every
bad case found so far: link loops, a dangling link, a pipe, a raster whose corners fall outside its
projection's domain, VRTs (and a ``.tif`` holding VRT XML) that pull a network source, /etc/passwd,
a raster outside the folder, a missing file or each other in a cycle, GDAL redirections (a WMS
definition, an overview sidecar, PAM and internal ``OVERVIEW_FILE`` metadata), a truncated GeoTIFF
and a text file with a raster extension. Every network reference points at the listener, so a
test can assert that nothing ever reached it.

``Listener`` runs ``http.server`` in a child process (not a thread: a GDAL read that holds the GIL
would stall an in-process server and hang the test instead of failing it), answers 404, appends
each request to a log and stops by itself after ``timeout`` seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

ORTHO = "+proj=ortho +lat_0=89 +lon_0=0 +datum=WGS84 +units=m"

_SERVER = r"""
import http.server, sys, threading
log = open(sys.argv[1], "a", buffering=1)
class Handler(http.server.BaseHTTPRequestHandler):
    def answer(self):
        log.write(f"{self.command} {self.path}\n")
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_HEAD = do_POST = do_PUT = do_OPTIONS = answer
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Timer(float(sys.argv[2]), server.shutdown).start()
server.serve_forever()
"""


class Listener:
    """A loopback HTTP server in a child process that records every request (``requests()``)."""

    def __init__(self, log: Path, timeout: float = 600.0) -> None:
        self.log = Path(log)
        self.timeout = timeout
        self.port = 0
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> Listener:
        self.log.write_text("")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(self.log), str(self.timeout)],
            stdout=subprocess.PIPE, text=True,
        )
        self.port = int(self._proc.stdout.readline())
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc.stdout.close()

    def url(self, name: str = "x.tif") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def requests(self, settle: float = 0.2) -> list[str]:
        """Every request received so far (after ``settle`` seconds for one in flight)."""
        time.sleep(settle)
        return [line for line in self.log.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class Bad:
    """A bad file: the skip codes that fit it and a word its reason must contain."""

    codes: tuple[str, ...]
    word: str


@dataclass
class HostileFolder:
    root: Path
    outside: Path  # a folder beside root holding a real raster
    good: list[Path] = field(default_factory=list)  # what must be indexed
    bad: dict[str, Bad] = field(default_factory=dict)  # path as listed -> expectation
    #: bad files that only indexing can reveal (readable headers, bad content)
    read_time: frozenset[str] = frozenset()


def write_geotiff(path: Path, size: int = 256, crs: str | None = "EPSG:32633",
                  transform=None, seed: int = 0, overview_file: str | None = None) -> Path:
    """An RGB uint8 GeoTIFF with smooth, seeded content; ``overview_file`` is written into its
    GDAL metadata (the OVERVIEWS domain), where GDAL looks for external overviews."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    bands = [np.sin(6 * xx * (i + 1) + rng.uniform(0, 3)) * np.cos(5 * yy + i) for i in range(3)]
    data = np.stack([(b * 100 + 128).clip(0, 255) for b in bands]).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3,
                       dtype="uint8", crs=crs, photometric="RGB",
                       transform=transform or from_origin(500_000, 5_000_000, 10, 10)) as dst:
        dst.write(data)
        if overview_file:
            dst.update_tags(ns="OVERVIEWS", OVERVIEW_FILE=overview_file)
    return path


def vrt_xml(source: str, relative: bool = False, size: int = 256, raw: bool = False) -> str:
    """A one-band VRT reading ``source`` (``raw``: as a VRTRawRasterBand)."""
    rel = "1" if relative else "0"
    if raw:
        return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">\n'
                '  <VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">\n'
                f'    <SourceFilename relativeToVRT="{rel}">{source}</SourceFilename>\n'
                "    <ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset>\n"
                f"    <LineOffset>{size}</LineOffset>\n"
                "  </VRTRasterBand>\n</VRTDataset>\n")
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">\n'
            '  <VRTRasterBand dataType="Byte" band="1">\n    <SimpleSource>\n'
            f'      <SourceFilename relativeToVRT="{rel}">{source}</SourceFilename>\n'
            "      <SourceBand>1</SourceBand>\n"
            f'      <SourceProperties RasterXSize="{size}" RasterYSize="{size}" '
            f'DataType="Byte" BlockXSize="{size}" BlockYSize="1"/>\n'
            "    </SimpleSource>\n  </VRTRasterBand>\n</VRTDataset>\n")


def build_hostile_folder(tmp: Path, port: int) -> HostileFolder:
    """Write the hostile folder under ``tmp`` (``tmp/hostile``, ``tmp/outside``); every network
    reference in it points at ``http://127.0.0.1:<port>/``."""
    root, outside = Path(tmp) / "hostile", Path(tmp) / "outside"
    root.mkdir(parents=True)
    outside.mkdir(parents=True)
    folder = HostileFolder(root, outside)
    url = f"http://127.0.0.1:{port}"
    _write_good(folder)
    _write_links(folder)
    _write_vrts(folder, url)
    _write_redirections(folder, url)
    _write_broken(folder)
    return folder


def _bad(folder: HostileFolder, name: str, codes: str | tuple[str, ...], word: str) -> Path:
    path = folder.root / name
    folder.bad[str(path)] = Bad((codes,) if isinstance(codes, str) else codes, word)
    return path


def _write_good(folder: HostileFolder) -> None:
    good = write_geotiff(folder.root / "good.tif")
    mosaic = folder.root / "good_mosaic.vrt"
    mosaic.write_text(vrt_xml("good.tif", relative=True))
    folder.good += [good, mosaic]
    write_geotiff(folder.outside / "real.tif", seed=5)


def _write_links(folder: HostileFolder) -> None:
    root = folder.root
    os.symlink("self_link.tif", _bad(folder, "self_link.tif", "data_unreadable", "loop"))
    os.symlink("loop_b.tif", _bad(folder, "loop_a.tif", "data_unreadable", "loop"))
    os.symlink("loop_a.tif", _bad(folder, "loop_b.tif", "data_unreadable", "loop"))
    os.symlink("gone.tif", _bad(folder, "dangling.tif", "data_unreadable", "broken"))
    os.symlink(folder.outside / "real.tif",
               _bad(folder, "outside_link.tif", "source_refused", "outside"))
    os.symlink(".", root / "linked_dir")  # a folder link loop: must not be walked
    os.mkfifo(_bad(folder, "fifo.tif", "data_unreadable", "regular"))


def _write_vrts(folder: HostileFolder, url: str) -> None:
    remote = vrt_xml(f"/vsicurl/{url}/remote.tif")
    _bad(folder, "remote.vrt", "source_refused", "network").write_text(remote)
    _bad(folder, "remote_vrt_as.tif", "source_refused", "network").write_text(remote)
    _bad(folder, "plain_url.vrt", "source_refused", "network").write_text(
        vrt_xml(f"{url}/plain.tif"))
    _bad(folder, "passwd.vrt", "source_refused", "passwd").write_text(
        vrt_xml("/etc/passwd", raw=True))
    _bad(folder, "outside.vrt", "source_refused", "outside").write_text(
        vrt_xml(str(folder.outside / "real.tif")))
    _bad(folder, "missing_source.vrt", "source_refused", "does not exist").write_text(
        vrt_xml("not_here.tif", relative=True))
    for name, nxt in (("cycle_a", "cycle_b"), ("cycle_b", "cycle_c"), ("cycle_c", "cycle_a")):
        _bad(folder, f"{name}.vrt", "source_refused", "cycle").write_text(
            vrt_xml(f"{nxt}.vrt", relative=True))


def _write_redirections(folder: HostileFolder, url: str) -> None:
    _bad(folder, "wms.tif", "source_refused", "GDAL_WMS").write_text(
        "<GDAL_WMS><Service name=\"TMS\"><ServerUrl>"
        f"{url}/wms/${{z}}/${{x}}/${{y}}.png</ServerUrl></Service>"
        "<DataWindow><UpperLeftX>-20037508.34</UpperLeftX><UpperLeftY>20037508.34</UpperLeftY>"
        "<LowerRightX>20037508.34</LowerRightX><LowerRightY>-20037508.34</LowerRightY>"
        "<TileLevel>2</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>"
        "<YOrigin>top</YOrigin></DataWindow><Projection>EPSG:3857</Projection>"
        "<BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>3</BandsCount>"
        "</GDAL_WMS>\n")
    ovr = write_geotiff(_bad(folder, "ovr_trap.tif", "source_refused", "sidecar"), seed=1)
    Path(f"{ovr}.ovr").write_text(vrt_xml(f"/vsicurl/{url}/ovr.tif", size=128))
    pam = write_geotiff(_bad(folder, "pam_trap.tif", "source_refused", "OVERVIEW_FILE"), seed=2)
    Path(f"{pam}.aux.xml").write_text(
        '<PAMDataset><Metadata domain="OVERVIEWS">'
        f'<MDI key="OVERVIEW_FILE">/vsicurl/{url}/pam.tif</MDI></Metadata></PAMDataset>\n')
    internal = _bad(folder, "internal_trap.tif", "source_refused", "OVERVIEW_FILE")
    write_geotiff(internal, seed=3, overview_file=f"/vsicurl/{url}/internal.tif")
    assert not Path(f"{internal}.aux.xml").exists(), "the tag must be inside the TIFF"


def _write_broken(folder: HostileFolder) -> None:
    ortho = _bad(folder, "ortho.tif", "bad_coordinates", "outside")
    write_geotiff(ortho, crs=ORTHO, transform=from_origin(-1e7, 1e7, 1000, 1000), seed=4)
    truncated = _bad(folder, "truncated.tif", ("data_unreadable", "not_a_raster"), "")
    write_geotiff(truncated, seed=6)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 5])
    _bad(folder, "notes.tif", "not_a_raster", "not a raster").write_text(
        "These are field notes, not a raster.\n" * 20)
    folder.read_time = frozenset({str(ortho), str(truncated)})
