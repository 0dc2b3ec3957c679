"""The Processing algorithm that runs a saved refined search, against the REAL worker and an
index of the sample rasters (real QGIS)."""

from __future__ import annotations

from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingUtils


def test_run_saved_search_algorithm(qgis_processing, shared, sample_index, tmp_path):  # noqa: ANN001
    import processing
    from cach_for_qgis.cach_qgis.processing.provider import CachProvider

    first = shared.call("search", {"index": sample_index, "text": "a river", "k": 4})
    ids = [h["tile_id"] for h in first["results"]]
    saved = tmp_path / "river.json"
    refined = shared.call("search", {"index": sample_index, "text": "a river",
                                     "positive": ids[:2], "negative": ids[2:],
                                     "save": str(saved), "k": 3})
    assert saved.is_file() and refined["query"]["learner"] == "logistic-prior"

    registry = QgsApplication.processingRegistry()
    added = registry.providerById("cach") is None and registry.addProvider(CachProvider())
    try:
        out = processing.run("cach:runsavedsearch", {"INDEX": sample_index, "SAVED": str(saved),
                                                     "K": 3, "OUTPUT": "memory:"})
    finally:
        if added:
            registry.removeProvider("cach")
    layer = out["OUTPUT"]
    if isinstance(layer, str):
        layer = QgsProcessingUtils.mapLayerFromString(layer, QgsProcessingContext())
    assert layer.featureCount() == 3
    feats = sorted(layer.getFeatures(), key=lambda f: f["rank"])
    direct = shared.call("search", {"index": sample_index, "saved": str(saved), "k": 3})
    assert direct["query"]["scorer"] == "full"
    assert [f["tile_id"] for f in feats] == [h["tile_id"] for h in direct["results"]]
    conf = [f["confidence"] for f in feats]
    assert conf == sorted(conf, reverse=True)
