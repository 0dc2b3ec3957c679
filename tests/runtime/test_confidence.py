"""The weak-match rule (model_runtime/confidence.py) on hand-made and seeded arrays, the shipped
calibration file, and the calibration's replica of the search path against the real index."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from model_runtime import confidence as C
from model_runtime.errors import ConfigError, DataError
from model_runtime.hashing.heads_io import shipped_heads_path
from model_runtime.index.query import angular_score
from model_runtime.paths import HEADS_DIR, sha256_file

BITS = 64
REFS = tuple(f"reference caption {i}" for i in range(40))


def _tanh(x):
    return np.tanh(np.asarray(x, dtype=np.float32))


def _score(q, hits):
    hits = C.unit_rows(hits)
    return np.round(angular_score(hits @ C.unit_rows(q)[0]), 4).astype(np.float64)


class Encoder:
    """A text encoder stand-in: seeded tanh vectors per text; counts its calls."""

    def __init__(self, bits=BITS):
        self.bits, self.calls = bits, 0

    def encode_texts(self, texts):
        self.calls += 1
        rng = [np.random.default_rng(sum(map(ord, t))) for t in texts]
        return _tanh(np.stack([r.standard_normal(self.bits) for r in rng]))


def _context(kind: str, bits=BITS, k=20, m=500, seed=0, encoder=None,
             background=None) -> C.MatchContext:
    """``present``: hits are near copies of the query; ``far``: hits have nothing to do with it.
    ``background``: the archive's sample (default: random tanh vectors)."""
    rng = np.random.default_rng(seed)
    pre = rng.standard_normal(bits) * 2
    query = _tanh(pre)
    if kind == "present":
        hits = _tanh(pre + rng.normal(scale=np.linspace(0.2, 1.0, k))[:, None]
                     * rng.standard_normal((k, bits)))
    else:
        hits = _tanh(rng.standard_normal((k, bits)) * 2)
    scores = _score(query, hits)
    order = np.argsort(-scores, kind="stable")
    if background is None:
        background = _tanh(rng.standard_normal((m, bits)) * 2)
    fn = None if encoder is None else encoder.encode_texts
    return C.MatchContext(query, hits[order], scores[order], background, "a query", fn)


RULE = C.Rule(bits=BITS, features=("logit", "ref_margin"), weights=(3.0, 4.0), bias=-2.0,
              threshold=0.5, top_n=5, references=REFS,
              fallback=C.Rule(bits=BITS, features=("logit",), weights=(3.0,), bias=-2.0,
                              threshold=0.5))


# -- the rule on hand-made arrays --------------------------------------------------------------
def test_a_clearly_present_query_is_not_weak_and_confident():
    res = C.assess(_context("present", encoder=Encoder()), RULE)
    assert not res.weak_match
    assert res.confidence.shape == (20,) and res.confidence[:5].min() > 0.9


def test_a_query_far_from_everything_is_weak():
    res = C.assess(_context("far", encoder=Encoder()), RULE)
    assert res.weak_match
    assert res.confidence.max() < 0.5


def test_confidence_rises_with_the_score_and_stays_in_0_1():
    rng = np.random.default_rng(3)
    pre = rng.standard_normal(BITS)
    noise = rng.standard_normal(BITS)
    hits = _tanh([pre + t * noise for t in np.linspace(0.0, 3.0, 12)])
    ctx = C.MatchContext(_tanh(pre), hits, _score(_tanh(pre), hits), hits[:0], "q")
    conf = C.assess(ctx, RULE.fallback).confidence
    assert np.all((conf >= 0) & (conf <= 1))
    assert np.all(np.diff(conf) < 0), conf  # hits drift away from the query: confidence falls


def test_weak_is_the_mean_of_the_best_top_n_below_the_threshold():
    rule = dataclasses.replace(RULE.fallback, top_n=3, threshold=0.6)
    assert not C.weak_from(np.array([0.9, 0.5, 0.5, 0.0]), rule)  # best 3: mean 0.633
    assert C.weak_from(np.array([0.7, 0.5, 0.5, 1.0]), rule)  # best 3: 0.567; the 4th not counted
    assert C.weak_from(np.array([]), rule)


def test_no_hits_is_weak():
    ctx = C.MatchContext(_tanh(np.ones(BITS)), np.zeros((0, BITS), np.float32), np.zeros(0),
                         np.zeros((0, BITS), np.float32))
    res = C.assess(ctx, RULE)
    assert res.weak_match and res.confidence.shape == (0,)


def test_references_are_encoded_once_per_model_and_fallback_without_encoder():
    enc = Encoder()
    first = C.assess(_context("present", encoder=enc), RULE)
    again = C.assess(_context("present", seed=1, encoder=enc), RULE)  # a new bound method
    assert enc.calls == 1 and not first.weak_match and not again.weak_match
    other = Encoder()
    C.assess(_context("present", encoder=other), RULE)
    assert other.calls == 1  # another model: its own reference vectors
    plain = C.assess(_context("present"), RULE)
    direct = C.assess(_context("present"), RULE.fallback)
    np.testing.assert_allclose(plain.confidence, direct.confidence)
    with pytest.raises(ConfigError):
        C.assess(_context("present"), dataclasses.replace(RULE, fallback=None))


def test_reference_margin_matches_a_brute_force_reference():
    ctx = _context("far", seed=5)
    refs = C.unit_rows(Encoder().encode_texts(list(REFS)))
    got = C.hit_features(ctx, ["ref_margin", "logit"], refs)
    for i, h in enumerate(ctx.hit_vecs):
        cos = [float(np.dot(h, r) / np.linalg.norm(h)) for r in refs]
        to_q = float(np.dot(h, ctx.query_vec) / np.linalg.norm(h) / np.linalg.norm(ctx.query_vec))
        assert got[i, 0] == pytest.approx(to_q - np.quantile(cos, C.REF_QUANTILE), abs=1e-5)
        s = ctx.hit_scores[i]
        assert got[i, 1] == pytest.approx(np.log(s / (1 - s)))


def test_rule_json_round_trip_and_bad_files(tmp_path):
    back = C.Rule.from_json(RULE.to_json(), BITS, REFS)
    assert back.features == RULE.features and back.fallback.features == ("logit",)
    assert back.weights == pytest.approx(RULE.weights) and back.references == REFS
    with pytest.raises(DataError):
        C.Rule.from_json(RULE.to_json(), BITS, ())  # ref_margin without references
    bad = tmp_path / "calibration.json"
    bad.write_text("{not json")
    with pytest.raises(DataError):
        C.load_rule(BITS, path=bad)
    bad.write_text('{"format": "something else"}')
    with pytest.raises(DataError):
        C.load_rule(BITS, path=bad)


# -- the shipped calibration -------------------------------------------------------------------
SHIPPED_BITS = sorted(int(p.stem.rsplit("-", 1)[1]) for p in HEADS_DIR.glob("cach-*.safetensors"))


@pytest.mark.parametrize("bits", SHIPPED_BITS)
def test_shipped_calibration_loads_for_every_shipped_bit_length(bits):
    sha = sha256_file(shipped_heads_path(bits))
    rule = C.load_rule(bits, sha)
    assert rule.bits == bits and rule.heads_sha == sha, "the shipped heads are not calibrated"
    assert 0.0 < rule.threshold < 1.0 and np.all(np.isfinite(rule.weights))
    assert rule.weights[rule.features.index("logit")] > 0  # a higher score never lowers it
    if rule.needs_text:  # the references' outputs ship with the heads: no encoding needed
        assert len(rule.references) >= 50 and rule.fallback is not None
        assert rule.reference_vecs.shape == (len(rule.references), bits)
        assert not rule.needs_encoder
    # an archive that looks like what the text side knows (its tiles are the references)
    familiar = None if rule.gate is None else np.repeat(rule.reference_vecs, 3, axis=0)
    assert not C.assess(_context("present", bits=bits, background=familiar), rule).weak_match
    assert C.assess(_context("far", bits=bits, background=familiar), rule).weak_match
    other = C.load_rule(bits, "0" * 64)  # other heads of this length: the rule for the length
    assert other.heads_sha is None and other.weights == rule.weights
    assert other.reference_vecs is None and other.needs_encoder == rule.needs_text
    enc = Encoder(bits)
    own = None if rule.gate is None else np.repeat(enc.encode_texts(list(rule.references)), 3, 0)
    assert not C.assess(_context("present", bits=bits, encoder=enc, background=own),
                        other).weak_match
    assert C.assess(_context("far", bits=bits, encoder=enc, background=own), other).weak_match
    if rule.gate is None:
        assert C.assess(_context("far", bits=bits), other).weak_match  # the fallback
    else:  # the fallback (no references, no gate) is fitted to stay quiet when unsure
        assert C.assess(_context("present", bits=bits), other).confidence[0] > 0.5


def test_reference_vectors_round_trip_through_base64_float16():
    vecs = _tanh(np.random.default_rng(0).standard_normal((7, 16)))
    back = C.decode_vectors(C.encode_vectors(vecs), 7, 16)
    np.testing.assert_allclose(back, vecs, atol=1e-3)
    with pytest.raises(DataError):
        C.decode_vectors(C.encode_vectors(vecs), 7, 32)
    with pytest.raises(DataError):
        C.decode_vectors("not base64!", 7, 16)


def test_previous_heads_keep_their_own_rule_and_references(tmp_path):
    """Heads shipped before the current ones (kept for old indexes) keep what they were
    calibrated with; other heads of the bit length get the current rule."""
    old_refs = ["an old reference", "another one"]
    old_rule = dataclasses.replace(RULE, bias=-1.0, threshold=0.3)
    vecs = Encoder().encode_texts(old_refs)
    doc = {
        "format": C.FORMAT, "format_version": 1, "references": list(REFS),
        "by_bits": {str(BITS): RULE.to_json()},
        "by_sha": {"a" * 64: {"bits": BITS, "rule": old_rule.to_json(), "references": old_refs,
                              "reference_vectors": C.encode_vectors(vecs)}},
    }
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(doc))
    old = C.load_rule(BITS, "a" * 64, path=path)
    assert old.bias == -1.0 and old.threshold == 0.3 and old.references == tuple(old_refs)
    np.testing.assert_allclose(old.reference_vecs, vecs, atol=1e-3)
    current = C.load_rule(BITS, "b" * 64, path=path)
    assert current.bias == RULE.bias and current.references == REFS
    assert current.reference_vecs is None


def test_uncalibrated_bit_length_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        C.load_rule(24)
    assert err.value.code == "no_heads"


# -- the calibration's replica of the search path ---------------------------------------------
def test_calibration_search_replica_matches_index_search(sample_folder, tmp_path, encoder):
    """research/calibration.py scores with arrays what Index.search returns (same ids, scores)."""
    from model_runtime.index import BuildOptions, build_index, open_index
    from model_runtime.raster.tiling import TilingOptions
    from research.calibration import product_search

    build_index(tmp_path / "idx", [str(sample_folder)], encoder,
                BuildOptions(tiling=TilingOptions(tile_size=64)))
    with open_index(tmp_path / "idx") as index:
        assert index.tiles > 100  # more than the Hamming pool: the shortlist matters
        ids = np.arange(1, index.tiles + 1)
        vectors = index.store.vectors(ids)
        db = np.stack([vectors[int(i)][1] for i in ids])
        rng = np.random.default_rng(0)
        for _ in range(5):
            query = _tanh(db[rng.integers(len(db))] * 2 + rng.standard_normal(BITS))
            hits = index.search(query, k=8, collapse=False)
            pos, scores = product_search(query, db, k=8)
            assert [h.tile_id for h in hits] == (ids[pos]).tolist()
            assert [h.score for h in hits] == pytest.approx(scores.tolist(), abs=1e-4)


# -- format 2: coherence of the top group, familiarity gate -----------------------------------
COHERENT = C.Rule(bits=BITS, features=("logit", "coherence", "group_coherence"),
                  weights=(3.0, 0.5, 0.5), bias=-4.0, threshold=0.5)


def _group(spread: float, k=20, seed=0) -> np.ndarray:
    """``k`` hits around one common scene (``spread`` 0: the same tile; large: unrelated)."""
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(BITS) * 2
    return _tanh(centre + spread * rng.standard_normal((k, BITS)))


def test_a_coherent_top_group_raises_confidence_over_random_hits_at_equal_scores():
    rng = np.random.default_rng(7)
    background = _tanh(rng.standard_normal((400, BITS)) * 2)
    scores = np.linspace(0.75, 0.70, 20)  # the same query-to-tile scores for both
    query = _tanh(rng.standard_normal(BITS))
    coherent = C.MatchContext(query, _group(0.5), scores, background)
    scattered = C.MatchContext(query, _tanh(rng.standard_normal((20, BITS)) * 2), scores,
                               background)
    f_coh = C.hit_features(coherent, COHERENT.features)
    f_sca = C.hit_features(scattered, COHERENT.features)
    assert np.all(f_coh[:, 1] > 2.0) and np.all(np.abs(f_sca[:, 1]) < 1.0)  # per hit
    assert f_coh[0, 2] > 2.0 and abs(f_sca[0, 2]) < 1.0  # the group
    assert np.all(np.ptp(f_coh[:, 2:], axis=0) == 0)  # group_coherence: one value per search
    conf_coh = C.assess(coherent, COHERENT).confidence
    conf_sca = C.assess(scattered, COHERENT).confidence
    assert np.all(conf_coh > conf_sca)
    assert not C.assess(coherent, COHERENT).weak_match
    assert C.assess(scattered, COHERENT).weak_match


def test_group_coherence_falls_monotonically_as_the_top_group_scatters():
    background = _tanh(np.random.default_rng(1).standard_normal((400, BITS)) * 2)
    values = [C.coherence(_group(s), background)[1, 0] for s in (0.2, 0.5, 1.0, 2.0, 4.0)]
    assert np.all(np.diff(values) < 0), values


def test_coherence_is_relative_to_the_archive_and_silent_without_one():
    hits = _group(0.8)
    rng = np.random.default_rng(2)
    varied = _tanh(rng.standard_normal((400, BITS)) * 2)
    alike = _group(0.8, k=400, seed=0)  # an archive of nothing but that scene
    assert C.coherence(hits, varied)[1, 0] > C.coherence(hits, alike)[1, 0] + 2.0
    np.testing.assert_array_equal(C.coherence(hits, varied[:3]), np.zeros((2, 20)))


def test_familiarity_reads_how_near_the_archive_is_to_the_references():
    refs = C.unit_rows(Encoder().encode_texts(list(REFS)))
    rng = np.random.default_rng(4)
    near = np.repeat(refs, 5, axis=0) + 0.05 * rng.standard_normal((5 * len(refs), BITS))
    far = _tanh(rng.standard_normal((200, BITS)) * 2)
    assert C.familiarity(near, refs) > 0.9 > 0.5 > C.familiarity(far, refs)
    assert C.familiarity(far[:2], refs) == 0.0


def _gate(**changes):
    """A gate: fully open from familiarity 0.8, closed below 0.7; prior 0.3 at 0.8, 2 per unit."""
    return dataclasses.replace(C.Gate(min_familiarity=0.8, prior=0.3, ramp=0.1, slope=2.0),
                               **changes)


def test_gate_weight_and_prior_are_monotone_and_bounded():
    fams = np.linspace(0.0, 1.0, 101)
    weights = [_gate().weight(f) for f in fams]
    priors = [_gate().prior_at(f) for f in fams]
    assert np.all(np.diff(weights) >= 0) and weights[0] == 0.0 and weights[-1] == 1.0
    assert _gate().weight(0.7) == 0.0 and _gate().weight(0.75) == pytest.approx(0.5)
    assert np.all(np.diff(priors) >= 0) and min(priors) == 0.0 and max(priors) <= 1.0
    assert _gate().prior_at(0.8) == pytest.approx(0.3)
    assert _gate().prior_at(0.7) == pytest.approx(0.1)


def test_an_unfamiliar_archive_gets_no_note_and_confidence_at_the_prior():
    """Where the evidence cannot tell, say nothing: no weak-match note, the prior as confidence;
    a familiar archive gets the fitted model unchanged (note included)."""
    enc = Encoder()
    refs = C.unit_rows(enc.encode_texts(list(REFS)))
    rule = dataclasses.replace(COHERENT, references=REFS, gate=_gate())
    unfamiliar = _context("far", encoder=enc)  # random tiles: familiarity well below 0.7
    fam = C.familiarity(unfamiliar.background_vecs, refs)
    res = C.assess(unfamiliar, rule)
    assert fam < 0.7 and not res.weak_match
    np.testing.assert_allclose(res.confidence, _gate().prior_at(fam), atol=1e-3)
    assert C.assess(unfamiliar, COHERENT).weak_match  # the same rule without a gate cries wolf
    familiar = _context("far", encoder=enc, background=np.repeat(refs, 5, axis=0))
    gated, plain = C.assess(familiar, rule), C.assess(familiar, COHERENT)
    assert gated.weak_match and plain.weak_match
    np.testing.assert_allclose(gated.confidence, plain.confidence)
    model = np.array([0.9, 0.1])
    conf, speaks = C.gated(np.log(model / (1 - model)), 0.75, _gate())  # half-way up the ramp
    assert not speaks
    prior = _gate().prior_at(0.75)
    np.testing.assert_allclose(conf, prior + 0.5 * (model - prior))


def test_spread_keeps_the_order_of_the_evidence_around_the_prior():
    z = np.linspace(3.0, -3.0, 10)  # the model's log-odds, best hit first
    flat, _ = C.gated(z, 0.7, _gate())
    prior = _gate().prior_at(0.7)
    assert prior == pytest.approx(0.1)
    np.testing.assert_allclose(flat, prior)
    spread = _gate(spread=0.3)
    conf, speaks = C.gated(z, 0.7, spread)
    assert not speaks and np.all(np.diff(conf) < 0)  # monotone in the evidence
    assert conf[0] > prior > conf[-1] and abs(np.median(conf) - prior) < 0.02
    wider, _ = C.gated(z, 0.7, _gate(spread=0.6))
    assert wider[0] > conf[0] and wider[-1] < conf[-1]
    np.testing.assert_allclose(C.gated(z, 0.95, spread)[0], C.sigmoid(z))  # familiar: model


def test_format_2_round_trips_and_format_1_files_still_load(tmp_path):
    rule = dataclasses.replace(COHERENT, references=REFS, gate=_gate(),
                               fallback=dataclasses.replace(COHERENT, threshold=0.1))
    back = C.Rule.from_json(rule.to_json(), BITS, REFS)
    assert back.gate == _gate() and back.features == COHERENT.features and back.needs_text
    assert back.fallback.gate is None and not back.fallback.needs_text
    with pytest.raises(DataError):
        C.Rule.from_json(rule.to_json(), BITS, ())  # a gate needs the references
    with pytest.raises(DataError):
        C.Rule.from_json({**rule.to_json(), "gate": {"min_familiarity": 0.8, "prior": 2.0}},
                         BITS, REFS)
    path = tmp_path / "calibration.json"
    v1 = {"format": C.FORMAT, "format_version": 1, "references": list(REFS),
          "by_bits": {str(BITS): RULE.to_json()}}
    path.write_text(json.dumps(v1))
    old = C.load_rule(BITS, path=path)
    assert old.gate is None and old.features == RULE.features and old.threshold == 0.5
    path.write_text(json.dumps({**v1, "format_version": 2,
                                "by_bits": {str(BITS): rule.to_json()}}))
    assert C.load_rule(BITS, path=path).gate == _gate()
    path.write_text(json.dumps({**v1, "format_version": C.FORMAT_VERSION + 1}))
    with pytest.raises(DataError):
        C.load_rule(BITS, path=path)


@pytest.mark.parametrize("bits", [b for b in SHIPPED_BITS if b in (64, 128)])
def test_shipped_rule_says_nothing_on_an_archive_unlike_its_calibration(bits):
    """Issue 19: on imagery unlike the calibration's the note does not cry wolf and the
    confidences sit around the prior for that familiarity, whether or not the hits match."""
    rule = C.load_rule(bits, sha256_file(shipped_heads_path(bits)))
    assert rule.gate is not None and 0.05 < rule.gate.prior < 0.6 and rule.gate.slope >= 0
    refs = C.unit_rows(rule.reference_vecs)
    rng = np.random.default_rng(3)
    # an archive of tiles that only roughly resemble the references (familiarity about 0.75,
    # as the bundled sample rasters read): below the gate, the prior about 0.2
    noisy = np.repeat(refs, 2, axis=0) + 0.9 / np.sqrt(bits) * rng.standard_normal(
        (2 * len(refs), bits))
    fam = C.familiarity(noisy, refs)
    assert fam < rule.gate.min_familiarity - rule.gate.ramp and rule.gate.prior_at(fam) > 0.1
    for kind in ("present", "far"):
        res = C.assess(_context(kind, bits=bits, background=noisy), rule)
        assert not res.weak_match
        assert abs(np.median(res.confidence[:10]) - rule.gate.prior_at(fam)) < 0.1  # best 10
        assert res.confidence.max() < 0.9
    familiar = np.repeat(rule.reference_vecs, 3, axis=0)
    assert C.assess(_context("far", bits=bits, background=familiar), rule).weak_match


def test_query_saturation_is_scale_free_and_lower_for_hesitant_outputs():
    rng = np.random.default_rng(0)
    pre = rng.standard_normal(BITS)
    sure, hesitant = _tanh(4.0 * pre), _tanh(0.3 * pre)  # the same direction, more or less sure
    assert C.query_saturation(sure) > 0.9 > 0.75 > C.query_saturation(hesitant)
    assert C.query_saturation(np.sign(pre)) == pytest.approx(1.0)
    for v in (sure, hesitant):  # search scales the query to unit length: the same value
        assert C.query_saturation(v / np.linalg.norm(v)) == pytest.approx(C.query_saturation(v))
    ctx = _context("present")
    col = C.hit_features(ctx, ["query_saturation"])[:, 0]
    np.testing.assert_allclose(col, C.query_saturation(ctx.query_vec))


def test_query_side_gate_silences_a_query_the_heads_hardly_know_on_familiar_imagery():
    gate = _gate(min_saturation=0.8, concept_prior=0.06, saturation_ramp=0.1)
    z = np.linspace(4.0, -4.0, 20)  # a confident model: strong best hits, weak tail
    known, speaks = C.gated(z, 0.95, gate, sat=0.9)
    np.testing.assert_allclose(known, C.sigmoid(z))
    assert speaks
    unknown, speaks = C.gated(z, 0.95, gate, sat=0.65)  # below the ramp: the concept prior
    np.testing.assert_allclose(unknown, 0.06, atol=1e-9)
    assert not speaks
    half, speaks = C.gated(z, 0.95, gate, sat=0.75)
    np.testing.assert_allclose(half, 0.06 + 0.5 * (C.sigmoid(z) - 0.06))
    assert not speaks
    weights = [gate.concept_weight(s) for s in np.linspace(0.5, 1.0, 51)]
    assert np.all(np.diff(weights) >= 0) and weights[0] == 0.0 and weights[-1] == 1.0
    assert _gate().concept_weight(0.1) == 1.0  # no query-side gate: always open
    back = C.Gate.from_json(gate.to_json())
    assert back == gate and "min_saturation" not in _gate().to_json()
    with pytest.raises(DataError):
        C.Gate.from_json({**gate.to_json(), "concept_prior": -0.1})


def test_shipped_rule_gives_no_note_to_a_hesitant_query_on_familiar_imagery():
    rule = C.load_rule(64, sha256_file(shipped_heads_path(64)))
    assert rule.gate.min_saturation is not None and 0.0 < rule.gate.concept_prior < 0.3
    familiar = np.repeat(rule.reference_vecs, 3, axis=0)
    far = _context("far", bits=64, background=familiar)
    assert C.assess(far, rule).weak_match  # a sure query, unrelated hits: the note
    rng = np.random.default_rng(5)
    hesitant = dataclasses.replace(far, query_vec=_tanh(0.2 * rng.standard_normal(64)))
    assert C.query_saturation(hesitant.query_vec) < rule.gate.min_saturation - 0.1
    res = C.assess(hesitant, rule)
    assert not res.weak_match
    np.testing.assert_allclose(res.confidence[:10].mean(), rule.gate.concept_prior, atol=0.05)
