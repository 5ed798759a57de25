"""Graders for the quality classifier (handout: "quality_classifier"): ``run_classify_quality(text)``
returns ``("wiki" | "cc", score)``.

The handout leaves the classifier's training data and model to the student (pages Wikipedia cites
vs random Common Crawl), so only what any reasonable classifier must get right is graded: the label
set, a score in [0, 1], and that clearly high-quality reference prose (encyclopedic paragraphs
written for these graders) is told apart from obvious web junk (keyword spam, page furniture,
product listings). Each text is graded on its own; none comes from a particular training set.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.core

REFERENCE_PROSE = [
    # a history article
    "The printing press with movable metal type was developed in the German city of Mainz around "
    "1450. Earlier presses had been used for pressing grapes and paper, but the new method combined "
    "an oil-based ink, a hand mould for casting large numbers of identical letters, and a screw press "
    "adapted to print evenly on paper. Within fifty years printing shops had opened in more than two "
    "hundred European towns, and historians estimate that several million books were produced before "
    "1500. The lower cost of books is often credited with spreading literacy, with the rapid "
    "circulation of scientific and religious arguments, and with the gradual standardisation of "
    "spelling in many European languages.",
    # a science article
    "Photosynthesis is the process by which green plants, algae and some bacteria convert light "
    "energy into chemical energy. In plants it takes place mainly in the chloroplasts of leaf cells, "
    "where the pigment chlorophyll absorbs red and blue light. The light-dependent reactions split "
    "water molecules, releasing oxygen as a by-product and producing the energy carriers ATP and "
    "NADPH. These carriers then drive the Calvin cycle, a series of reactions that fixes carbon "
    "dioxide from the air into three-carbon sugars. Because almost all food chains begin with "
    "organisms that photosynthesise, the process supplies nearly all of the energy used by life on "
    "Earth, and it is also the source of the oxygen in the atmosphere.",
    # a geography article
    "The Danube is the second-longest river in Europe after the Volga. It rises in the Black Forest "
    "in south-western Germany and flows for about 2,850 kilometres towards the south-east, passing "
    "through or along the borders of ten countries before it empties into the Black Sea through a "
    "wide delta in Romania and Ukraine. Four capital cities lie on its banks: Vienna, Bratislava, "
    "Budapest and Belgrade. The river has long served as a trade route and as a frontier; for "
    "several centuries it marked the northern border of the Roman Empire. Today the delta is a "
    "protected wetland that is home to hundreds of species of birds.",
]

WEB_JUNK = [
    # keyword spam
    "BEST CHEAP PILLS ONLINE!!! buy now buy now cheap pills discount pills free shipping "
    "click here click here best price best deal casino bonus win cash fast loans no credit check "
    "CLICK HERE NOW limited offer 90% OFF cheap cheap cheap buy buy buy best best best",
    # page furniture: menus, cookie banner, footer
    "Home | About Us | Products | Services | Blog | Contact\nLogin | Register | Cart (0)\n"
    "We use cookies to improve your experience. Accept all cookies | Manage preferences\n"
    "Privacy Policy | Terms of Use | Sitemap | Careers | Press\n"
    "Follow us: Facebook | Twitter | Instagram | YouTube\n© 2023 Example Corp. All rights reserved.",
    # a product listing
    "Wireless Mouse $12.99 Add to cart\nUSB-C Cable 2m $7.49 Add to cart\nLaptop Stand $24.99 Add to "
    "cart\nPhone Case $9.99 Add to cart\nHDMI Adapter $14.99 Add to cart\nShowing 1-5 of 248 results\n"
    "Sort by: Popularity | Price: low to high | Price: high to low\nPage 1 2 3 4 5 Next >>",
]


def classify(adapters, text: str) -> str:
    label, score = adapters.run_classify_quality(text)
    assert label in ("wiki", "cc"), f"labels are 'wiki' and 'cc', got {label!r}"
    assert 0.0 <= float(score) <= 1.0, f"the score is a confidence in [0, 1], got {score!r}"
    return label


@pytest.mark.points(2, problem="quality_classifier")
@pytest.mark.parametrize("text", REFERENCE_PROSE, ids=["history", "science", "geography"])
def test_reference_prose_is_wiki(adapters, text):
    assert classify(adapters, text) == "wiki"


@pytest.mark.points(2, problem="quality_classifier")
@pytest.mark.parametrize("text", WEB_JUNK, ids=["keyword_spam", "page_furniture", "product_listing"])
def test_web_junk_is_cc(adapters, text):
    assert classify(adapters, text) == "cc"
