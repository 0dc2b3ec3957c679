"""The Adapt dialog says what adapting improves, as measured (issue 19.2, docs/unseen.md):
text searches, and the shortlist of image searches on large archives; not the order of
similar-image results, which the image features' re-rank decides."""

from __future__ import annotations

from cach_for_qgis.cach_qgis import wording


def test_adapt_question_says_what_it_improves_and_what_not():
    text = wording.adapt_question("/data/indexes/coast")
    assert "coast" in text
    assert "text searches" in text
    assert "does not change the order of similar-image results" in text
    assert "find each other better" not in text  # the old promise, which measured nothing
