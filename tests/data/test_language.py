"""Graders for language ID on text written for these tests (no downloads: the model must be
available offline)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.extension  # our extras; core graders: tests/<unit>/core/

SAMPLES = {
    "en": "The committee met on Tuesday to discuss the new library budget, and most members agreed "
    "that the children's reading room should be renovated before the winter holidays.",
    "de": "Der Ausschuss traf sich am Dienstag, um über den neuen Haushalt der Bibliothek zu sprechen, "
    "und die meisten Mitglieder waren sich einig, dass der Lesesaal renoviert werden sollte.",
    "fr": "Le comité s'est réuni mardi pour discuter du nouveau budget de la bibliothèque, et la plupart "
    "des membres ont convenu que la salle de lecture des enfants devait être rénovée.",
    "zh": "委员会星期二开会讨论图书馆的新预算，大多数成员同意在寒假之前翻新儿童阅览室。",
    "ja": "委員会は火曜日に図書館の新しい予算について話し合い、ほとんどのメンバーは冬休みの前に"
    "子供の読書室を改装すべきだということに同意しました。",
    "es": "El comité se reunió el martes para discutir el nuevo presupuesto de la biblioteca, y la mayoría "
    "de los miembros estuvo de acuerdo en renovar la sala de lectura infantil.",
}


def test_mixed_text_is_less_confident(adapters):
    _, pure = adapters.run_identify_language(SAMPLES["en"])
    label, mixed = adapters.run_identify_language(SAMPLES["en"] + " " + SAMPLES["fr"])
    assert label in ("en", "fr")
    assert mixed < pure


def test_user_supplied_fasttext_model(adapters, tmp_path):
    from tests.data.fasttext_factory import expected_probabilities, write_fasttext_model

    words = {"the": [2.0, 0.0], "house": [1.5, 0.5], "der": [0.0, 2.0], "haus": [0.5, 1.5]}
    labels = {"en": [3.0, 0.0], "de": [0.0, 3.0]}
    path = write_fasttext_model(tmp_path / "lid.tiny.bin", words, labels)
    for text, language in [("the house", "en"), ("der haus", "de"), ("the haus der", "de")]:
        label, score = adapters.run_identify_language(text, model_path=path)
        assert label == language
        # fastText adds 1e-5 inside its log-probabilities and stores float32 weights
        assert score == pytest.approx(expected_probabilities(text, words, labels)[language], abs=1e-4)
    # a model that maps English words to "de" must flip the answer: the file really is used
    swapped = write_fasttext_model(tmp_path / "lid.swapped.bin", words, {"de": [3.0, 0.0], "en": [0.0, 3.0]})
    assert adapters.run_identify_language("the house", model_path=swapped)[0] == "de"
    assert adapters.run_identify_language("the house")[0] == "en"
    with pytest.raises(FileNotFoundError):
        adapters.run_identify_language("the house", model_path=tmp_path / "missing.bin")
