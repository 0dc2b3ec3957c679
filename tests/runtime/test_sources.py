"""Source handling for indexing (model_runtime.raster: listing, checks, guarded opens) on real
files, links, pipes and VRTs, with a loopback listener that must never receive a request
(tests/runtime/hostile.py)."""

from __future__ import annotations

import os
import pickle
import threading
import time

import pytest
import rasterio
from hostile import Listener, build_hostile_folder, vrt_xml, write_geotiff
from PIL import Image
from rasterio.env import get_gdal_config

from model_runtime.errors import CachError, ConfigError, DataError
from model_runtime.protocol import Skipped
from model_runtime.raster import checks, gdal_open, refs, remote, stores, tiling
from model_runtime.raster.checks import check_source
from model_runtime.raster.gdal_open import NO_NETWORK_GDAL, open_raster
from model_runtime.raster.refs import SourceRef, quick_signature
from model_runtime.raster.sources import RASTER_EXTENSIONS, list_sources


@pytest.fixture(scope="module")
def listener(tmp_path_factory):
    with Listener(tmp_path_factory.mktemp("listener") / "requests.log", timeout=900) as lis:
        yield lis


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, listener):
    return build_hostile_folder(tmp_path_factory.mktemp("h"), listener.port)


@pytest.fixture
def quiet(listener):
    """The listener's log is empty before and after the test body."""
    assert listener.requests(settle=0) == []
    yield listener
    assert listener.requests() == [], "GDAL reached the network"


def _skipped_by_path(skipped: list[Skipped]) -> dict[str, Skipped]:
    return {s.path: s for s in skipped}


# --- listing -------------------------------------------------------------------------------------
def test_list_sources_walks_sorted_once_and_leaves_hidden_out(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden_dir").mkdir()
    a = write_geotiff(tmp_path / "a.tif")
    c = write_geotiff(tmp_path / "b" / "c.TIF", size=64)
    write_geotiff(tmp_path / ".hidden.tif", size=64)
    write_geotiff(tmp_path / ".hidden_dir" / "x.tif", size=64)
    (tmp_path / "notes.txt").write_text("not listed: no raster extension")
    refs, skipped = list_sources([tmp_path, str(tmp_path), a])
    assert [r.uri for r in refs] == [str(a.resolve()), str(c.resolve())] and skipped == []
    st = os.stat(a)
    assert refs[0] == SourceRef(str(a.resolve()), st.st_size, str(st.st_mtime_ns), st.st_mtime)
    assert pickle.loads(pickle.dumps(refs[0])) == refs[0]  # work units travel to other processes
    assert not refs[0].is_remote and refs[0].gdal_path == refs[0].uri


def test_a_file_named_directly_is_taken_whatever_its_extension(tmp_path):
    odd = write_geotiff(tmp_path / "scene.data", size=64)
    refs, skipped = list_sources([odd])
    assert [r.uri for r in refs] == [str(odd)] and skipped == []


def test_missing_path_is_skipped_as_file_not_found(tmp_path):
    refs, skipped = list_sources([tmp_path / "nope"])
    assert refs == [] and [s.code for s in skipped] == ["file_not_found"]
    assert "nope" in skipped[0].reason


def test_links_loops_and_pipes_are_skipped_and_named_never_raised(hostile):
    refs, skipped = list_sources([hostile.root])
    by_path = _skipped_by_path(skipped)
    for name, word in (("self_link.tif", "loop"), ("loop_a.tif", "loop"), ("loop_b.tif", "loop"),
                       ("dangling.tif", "broken"), ("fifo.tif", "regular")):
        path = str(hostile.root / name)
        assert by_path[path].code == "data_unreadable" and word in by_path[path].reason
        assert path in by_path[path].reason
    listed = [r.uri for r in refs]
    # the folder link loop (linked_dir -> .) is not walked: every file appears once
    assert len(listed) == len(set(listed)) and not any("linked_dir" in u for u in listed)
    assert str(hostile.root / "good.tif") in listed


def test_a_link_to_a_file_outside_the_named_folders_needs_permission(hostile):
    link = str(hostile.root / "outside_link.tif")
    _, skipped = list_sources([hostile.root])
    assert _skipped_by_path(skipped)[link].code == "source_refused"
    assert "--allow-outside-sources" in _skipped_by_path(skipped)[link].reason
    refs, skipped = list_sources([hostile.root], allow_outside_sources=True)
    assert str(hostile.outside / "real.tif") in [r.uri for r in refs]
    assert link not in _skipped_by_path(skipped)
    # a link named directly is the user's own choice
    refs, skipped = list_sources([link])
    assert [r.uri for r in refs] == [str(hostile.outside / "real.tif")] and skipped == []


def test_remote_paths_are_never_stat_ed_and_need_a_store():
    assert refs.is_remote_uri("s3://bucket/key.tif") and refs.is_remote_uri("/vsis3/b/k")
    assert not refs.is_remote_uri("/data/s3:/x.tif") and not refs.is_remote_uri("C:\\x.tif")
    assert SourceRef("s3://bucket/a/b.tif", 1, "etag").gdal_path == "/vsis3/bucket/a/b.tif"
    with pytest.raises(ConfigError) as err:
        list_sources(["gs://bucket/prefix"])
    assert err.value.code == "extra_missing" and "gs://bucket/prefix" in str(err.value)


def test_object_storage_lists_the_same_extensions_as_a_folder():
    assert sorted(remote.RASTER_SUFFIXES) == sorted(RASTER_EXTENSIONS)


class _MemoryStore:
    """An in-memory remote store for the registration hook (no network)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def list_sources(self, uri):
        refs = [SourceRef(k, len(v), f"etag-{i}") for i, (k, v) in
                enumerate(sorted(self.objects.items())) if k.startswith(uri)]
        return refs, []

    def read_range(self, ref, start, length):
        return self.objects[ref.uri][start:start + length]

    def open(self, ref, driver):
        return ("opened", ref.uri, driver)


def test_a_registered_store_lists_checks_and_opens_remote_sources(tmp_path):
    tif = write_geotiff(tmp_path / "x.tif", size=64).read_bytes()
    store = _MemoryStore({"mem://b/x.tif": tif, "mem://b/y.vrt": vrt_xml("z.tif").encode()})
    stores.register_remote_store("mem", store)
    try:
        refs, skipped = list_sources(["mem://b/"])
        assert [r.uri for r in refs] == ["mem://b/x.tif", "mem://b/y.vrt"] and skipped == []
        assert check_source(refs[0], []) == []
        assert open_raster(refs[0]) == ("opened", "mem://b/x.tif", "GTiff")
        assert quick_signature(refs[0]) == "etag:etag-0"
        with pytest.raises(DataError) as err:  # a VRT in object storage names more sources
            check_source(refs[1], [])
        assert err.value.code == "source_refused"
    finally:
        stores._STORES.pop("mem")


# --- checking ------------------------------------------------------------------------------------
CHECK_CASES = ["remote.vrt", "remote_vrt_as.tif", "plain_url.vrt", "passwd.vrt", "outside.vrt",
               "missing_source.vrt", "cycle_a.vrt", "cycle_b.vrt", "cycle_c.vrt", "wms.tif",
               "ovr_trap.tif", "pam_trap.tif", "internal_trap.tif", "notes.tif"]


@pytest.mark.parametrize("name", CHECK_CASES)
def test_check_source_refuses_each_hostile_file_with_its_reason(hostile, quiet, name):
    path = str(hostile.root / name)
    expected = hostile.bad[path]
    with pytest.raises(DataError) as err:
        check_source(path, [hostile.root])
    assert err.value.code in expected.codes
    assert str(err.value).startswith(path) and expected.word in str(err.value)


def test_good_sources_pass_and_a_vrt_lists_what_it_reads(hostile, quiet):
    assert check_source(hostile.root / "good.tif", [hostile.root]) == []
    assert check_source(hostile.root / "good_mosaic.vrt", [hostile.root]) == [
        str(hostile.root / "good.tif")]


def test_allow_outside_sources_reads_an_outside_raster_but_never_passwd(hostile, quiet):
    outside = str(hostile.outside / "real.tif")
    assert check_source(hostile.root / "outside.vrt", [hostile.root], True) == [outside]
    with pytest.raises(DataError, match="raw band"):
        check_source(hostile.root / "passwd.vrt", [hostile.root], True)
    plain = hostile.outside / "plain_passwd.vrt"  # not raw: a simple source on a text file
    plain.write_text(vrt_xml("/etc/passwd"))
    with pytest.raises(DataError, match="not a raster format"):
        check_source(plain, [hostile.outside], True)


def test_nested_vrts_resolve_relative_to_each_vrt(tmp_path):
    write_geotiff(tmp_path / "base.tif", size=64)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mid.vrt").write_text(vrt_xml("../base.tif", relative=True, size=64))
    (tmp_path / "top.vrt").write_text(vrt_xml("sub/mid.vrt", relative=True, size=64))
    assert check_source(tmp_path / "top.vrt", [tmp_path]) == [
        str(tmp_path / "sub" / "mid.vrt"), str(tmp_path / "base.tif")]
    with open_raster(tmp_path / "top.vrt") as src:
        assert src.driver == "VRT" and src.read(1).shape == (64, 64)


def test_a_relative_name_not_relative_to_the_vrt_is_read_from_the_working_directory(
        tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    write_geotiff(tmp_path / "elsewhere" / "x.tif", size=64)
    vrt = tmp_path / "data" / "cwd.vrt"
    vrt.write_text(vrt_xml("x.tif", relative=False, size=64))
    monkeypatch.chdir(tmp_path / "elsewhere")  # where GDAL would look
    with pytest.raises(DataError, match="outside the folders"):
        check_source(vrt, [tmp_path / "data"])


def test_vrt_nesting_is_bounded(tmp_path):
    write_geotiff(tmp_path / "v0.tif", size=64)
    previous = "v0.tif"
    for i in range(1, checks.MAX_VRT_DEPTH + 2):
        (tmp_path / f"v{i}.vrt").write_text(vrt_xml(previous, relative=True, size=64))
        previous = f"v{i}.vrt"
    with pytest.raises(DataError, match="nested more than") as err:
        check_source(tmp_path / previous, [tmp_path])
    assert err.value.code == "source_refused"
    assert len(check_source(tmp_path / "v3.vrt", [tmp_path])) == 3


def test_derived_bands_entities_and_connection_strings_are_refused(tmp_path):
    write_geotiff(tmp_path / "a.tif", size=64)
    derived = vrt_xml("a.tif", relative=True, size=64).replace(
        '<VRTRasterBand dataType="Byte" band="1">',
        '<VRTRasterBand dataType="Byte" band="1" subClass="VRTDerivedRasterBand">'
        "<PixelFunctionType>f</PixelFunctionType><PixelFunctionLanguage>Python"
        "</PixelFunctionLanguage><PixelFunctionCode>import os</PixelFunctionCode>")
    cases = {
        "derived.vrt": (derived, "derived band"),
        "entity.vrt": ('<!DOCTYPE x [<!ENTITY e "a.tif">]>' + vrt_xml("&e;", True, 64),
                       "entities"),
        "conn.vrt": (vrt_xml('HDF5:"a.h5"://grid', size=64), "network"),
        "hdf.vrt": (vrt_xml("HDF5:a.h5:grid", size=64), "connection string"),
        "mem.vrt": (vrt_xml("MEM:::DATAPOINTER=0", size=64), "connection string"),
        "zip.vrt": (vrt_xml("/vsizip/a.zip/a.tif", size=64), "virtual file system"),
        "broken.vrt": ("<VRTDataset><VRTRasterBand>", "not valid VRT XML"),
    }
    for name, (text, word) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError) as err:
            check_source(tmp_path / name, [tmp_path])
        assert word in str(err.value), name


# --- opening -------------------------------------------------------------------------------------
def test_open_raster_chooses_the_driver_from_content_not_extension(tmp_path):
    png = tmp_path / "really_png.tif"
    Image.new("RGB", (32, 32), (10, 200, 30)).save(png, format="PNG")
    with open_raster(png) as src:
        assert src.driver == "PNG" and src.read(2)[0, 0] == 200
    disguised = tmp_path / "vrt_inside.tif"  # VRT XML saved as .tif: opens as a checked VRT
    write_geotiff(tmp_path / "base.tif", size=64)
    disguised.write_text(vrt_xml("base.tif", relative=True, size=64))
    with open_raster(disguised) as src:
        assert src.driver == "VRT"
    with pytest.raises(DataError) as err:
        open_raster(tmp_path / "missing.tif")
    assert err.value.code == "file_not_found"


def test_open_raster_refuses_without_hanging_on_a_pipe(hostile):
    outcome = []

    def attempt():
        try:
            open_raster(hostile.root / "fifo.tif")
        except CachError as err:
            outcome.append(err)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "opening a named pipe blocked"
    assert outcome and outcome[0].code == "data_unreadable" and "regular" in str(outcome[0])


def test_open_raster_checks_an_unchecked_vrt_on_its_content(hostile, quiet):
    with pytest.raises(DataError) as err:
        open_raster(hostile.root / "remote_vrt_as.tif")
    assert err.value.code == "source_refused" and "network" in str(err.value)
    with pytest.raises(DataError, match="OVERVIEW_FILE"):
        open_raster(hostile.root / "internal_trap.tif")
    with open_raster(hostile.root / "good_mosaic.vrt") as src:
        assert src.read(1).any()


def test_the_no_network_configuration_is_held_while_open_and_restored_after(hostile):
    key = "CPL_VSIL_CURL_ALLOWED_FILENAME"
    before = get_gdal_config(key)
    dataset = open_raster(hostile.root / "good.tif")
    assert get_gdal_config(key) == NO_NETWORK_GDAL[key]
    with open_raster(hostile.root / "good_mosaic.vrt"):  # nested holds are counted
        pass
    assert get_gdal_config(key) == NO_NETWORK_GDAL[key]
    dataset.close()
    assert get_gdal_config(key) == before


def test_the_listener_hears_gdal_when_nothing_guards_it(listener, tmp_path):
    """Control: without the guard GDAL does fetch, so 'no request' below means something."""
    url = listener.url("control.tif")
    with pytest.raises(rasterio.errors.RasterioIOError):
        rasterio.open(f"/vsicurl/{url}")
    assert any("/control.tif" in r for r in listener.requests())
    listener.log.write_text("")


def _capture(fn, failures: list) -> None:
    try:
        fn()
    except BaseException as err:  # re-raised by the test in the main thread
        failures.append(err)


@pytest.mark.parametrize("in_thread", [False, True])
def test_gdal_cannot_reach_the_network_inside_the_guard(hostile, quiet, in_thread):
    """The guard alone (no check) stops every trap in the folder, in the main thread and in a
    worker thread (where rasterio sets GDAL options thread-locally)."""
    errors = []

    def read_traps():
        with gdal_open.no_network():
            traps = {"remote.vrt": None, "ovr_trap.tif": None, "pam_trap.tif": None,
                     "internal_trap.tif": None, "wms.tif": "WMS"}  # WMS: plain HTTP, no /vsicurl/
            for name, driver in traps.items():
                try:
                    with rasterio.open(hostile.root / name, driver=driver) as src:
                        src.read(1, out_shape=(16, 16))
                except rasterio.errors.RasterioIOError as err:
                    errors.append(err)
            with pytest.raises(rasterio.errors.RasterioIOError):
                rasterio.open(f"/vsicurl/http://127.0.0.1:{quiet.port}/direct.tif")

    if in_thread:
        failures = []
        thread = threading.Thread(target=lambda: _capture(read_traps, failures))
        thread.start()
        thread.join(60)
        assert not thread.is_alive() and not failures, failures
    else:
        read_traps()
    assert errors, "the remote VRT cannot be read without the network"


def test_nothing_reaches_the_network_while_the_folder_is_listed_checked_opened_and_read(
        hostile, quiet):
    refs, skipped = list_sources([hostile.root])
    outcome = {s.path: s.code for s in skipped}
    tiles = 0
    for ref in refs:
        try:
            check_source(ref, [hostile.root])
            tiles += sum(1 for _ in tiling.iter_tiles(ref.gdal_path))
            outcome[ref.uri] = "indexed"
        except CachError as err:
            outcome[ref.uri] = err.code
    assert tiles >= 2
    assert {str(p) for p in hostile.good} == {p for p, c in outcome.items() if c == "indexed"}
    for path, bad in hostile.bad.items():
        assert outcome.get(path) in bad.codes, (path, outcome.get(path))


# --- signature -----------------------------------------------------------------------------------
def test_quick_signature_follows_the_ends_of_the_content_not_the_mtime(tmp_path):
    path = tmp_path / "big.bin"
    data = bytearray(os.urandom(400_000))
    path.write_bytes(data)
    before = quick_signature(path)
    os.utime(path, (time.time() + 100, time.time() + 100))
    assert quick_signature(refs.local_ref(path)) == before  # touched, unchanged
    data[10] ^= 0xFF
    path.write_bytes(data)
    assert quick_signature(path) != before
    data[10] ^= 0xFF
    data[-10] ^= 0xFF
    path.write_bytes(data)
    assert quick_signature(path) != before
    path.write_bytes(bytes(data) + b"x")
    assert quick_signature(path) != before
    assert refs.source_signature is quick_signature


def test_a_vrt_approval_is_forgotten_when_the_vrt_changes(tmp_path):
    write_geotiff(tmp_path / "a.tif", size=64)
    vrt = tmp_path / "m.vrt"
    vrt.write_text(vrt_xml("a.tif", relative=True, size=64))
    check_source(vrt, [tmp_path])
    assert checks.approved(str(vrt))
    vrt.write_text(vrt_xml("/vsicurl/http://127.0.0.1:9/x.tif", size=64))
    os.utime(vrt, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert not checks.approved(str(vrt))
    with pytest.raises(DataError, match="network"):
        open_raster(vrt)

