"""Graders for language ID on text written for these tests (no downloads: the model must be
available offline)."""


from __future__ import annotations

import pytest

pytestmark = pytest.mark.core


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


@pytest.mark.points(2, problem="language_identification")
@pytest.mark.parametrize("language", list(SAMPLES))
def test_identifies_language(adapters, language):
    label, score = adapters.run_identify_language(SAMPLES[language])
    assert label == language
    assert 0.5 < score <= 1.0


@pytest.mark.points(1, problem="language_identification")
def test_multiline_text(adapters):
    text = "\n".join([SAMPLES["de"], "", SAMPLES["de"]]) + "\n"
    label, score = adapters.run_identify_language(text)
    assert label == "de" and 0.5 < score <= 1.0


@pytest.mark.points(1, problem="language_identification")
def test_score_range_and_types(adapters):
    for text in ["ok", "a", "12345 !!! ???", "", "   \n  "]:
        label, score = adapters.run_identify_language(text)
        assert isinstance(label, str) and label
        assert 0.0 < score <= 1.0
