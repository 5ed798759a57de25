"""Train the "wiki vs cc" quality classifier, report held-out accuracy, save it (data/quality.py).

The real recipe (handout 2.7): positives are pages that Wikipedia cites, negatives random Common
Crawl pages. Fetch the cited URLs into a WARC file (e.g. ``wget --warc-file=positives -i urls.txt``
on a sample of Wikipedia's external links), take a CC WET file for the negatives, then::

    python scripts/train_quality.py --positives positives.warc.gz --negatives CC-MAIN-...-00000.warc.wet.gz \\
        --out quality.npz

Text files work too (documents separated by ``<|endoftext|>``, or one per line).

The small default model shipped in data/models/ is rebuilt offline with::

    python scripts/train_quality.py --offline-default --out data/models/quality_default.npz

Positives are then CPython's reference documentation (``pydoc_data``); negatives are generated
here with a seeded generator: link farms, keyword stuffing, shop listings, cookie/footer
boilerplate, SEO spam and word salad made from the positives' own words (so the model must look
at word order, not just vocabulary). Takes ~10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import random

from basics.cli import add_config_arguments, config_from_arguments, run_main
from data.quality import (
    QualityConfig,
    load_training_texts,
    reference_documentation_texts,
    save_quality_model,
    train_and_evaluate,
)

NAV = [
    "Home",
    "About Us",
    "Contact",
    "Blog",
    "Shop",
    "FAQ",
    "Login",
    "Register",
    "Privacy Policy",
    "Terms of Service",
    "Sitemap",
    "Careers",
    "Support",
    "Cart",
    "Checkout",
    "Help",
    "News",
    "Deals",
]
SPAM = [
    "cheap",
    "best",
    "free",
    "online",
    "casino",
    "bonus",
    "loans",
    "discount",
    "buy",
    "now",
    "viagra",
    "replica",
    "watches",
    "win",
    "money",
    "fast",
    "click",
    "here",
    "offer",
    "limited",
    "deal",
    "sale",
    "crypto",
    "earn",
    "cash",
    "weight",
    "loss",
    "pills",
    "top",
    "rated",
    "2024",
    "official",
    "site",
]
PRODUCTS = [
    "Wireless Earbuds",
    "Phone Case",
    "LED Strip",
    "Yoga Mat",
    "Coffee Grinder",
    "Desk Lamp",
    "Running Shoes",
    "Backpack",
    "Smart Watch",
    "USB Cable",
    "Water Bottle",
    "Sunglasses",
]
BOILERPLATE = [
    "We use cookies to improve your experience. By continuing you accept our use of cookies.",
    "Subscribe to our newsletter for the latest deals!",
    "All rights reserved.",
    "Skip to main content",
    "Share on Facebook",
    "Tweet",
    "Pin it",
    "Leave a comment",
    "Posted by admin",
    "Read more »",
    "Click here to learn more",
    "Sign up now",
    "Follow us on Instagram",
    "Back to top",
    "Powered by WordPress",
]


def link_farm(rng: random.Random) -> str:
    lines = [" | ".join(rng.sample(NAV, rng.randint(4, 9))) for _ in range(rng.randint(3, 8))]
    lines += [
        f"{rng.choice(SPAM)} {rng.choice(SPAM)} {rng.choice(PRODUCTS).lower()}"
        for _ in range(rng.randint(5, 15))
    ]
    return "\n".join(lines)


def keyword_stuffing(rng: random.Random) -> str:
    return " ".join(rng.choice(SPAM) for _ in range(rng.randint(40, 200)))


def shop_listing(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(5, 20)):
        name = rng.choice(PRODUCTS)
        lines.append(
            f"{name} - ${rng.randint(5, 199)}.{rng.randint(0, 99):02d} - {rng.choice(['In stock', 'Sold out', 'Only 3 left!'])} - Add to cart"
        )
        if rng.random() < 0.5:
            lines.append(f"★★★★☆ ({rng.randint(1, 999)} reviews)")
    return "\n".join(lines)


def boilerplate(rng: random.Random) -> str:
    lines = rng.sample(BOILERPLATE, rng.randint(4, len(BOILERPLATE)))
    lines.append(f"© {rng.randint(2005, 2024)} {rng.choice(['Acme', 'BestDeals', 'SuperShop'])} Inc.")
    return "\n".join(lines)


def seo_spam(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(5, 15)):
        words = [rng.choice(SPAM) for _ in range(rng.randint(3, 8))]
        sentences.append(" ".join(words).capitalize() + rng.choice(["!", "!!!", ".", "?"]))
    sentences.append(f"Visit www.{rng.choice(SPAM)}-{rng.choice(SPAM)}.com today!")
    return " ".join(sentences)


def word_salad(rng: random.Random, vocabulary: list[str]) -> str:
    return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(50, 250)))


def synthetic_negatives(positives: list[str], num_docs: int, seed: int) -> list[str]:
    """``num_docs`` seeded low-quality pages, a mix of the kinds above."""
    rng = random.Random(seed)
    vocabulary = [w for doc in positives for w in doc.split()]
    makers = [link_farm, keyword_stuffing, shop_listing, boilerplate, seo_spam]
    docs = []
    for i in range(num_docs):
        if i % 6 == 5:
            docs.append(word_salad(rng, vocabulary))
        else:
            docs.append(makers[i % 6](rng))
    return docs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--positives", nargs="+", default=[], help="WARC/WET/text files of good ('wiki') pages"
    )
    parser.add_argument(
        "--negatives", nargs="+", default=[], help="WARC/WET/text files of random ('cc') pages"
    )
    parser.add_argument(
        "--offline-default",
        action="store_true",
        help="train on stdlib reference docs vs seeded synthetic spam (no downloads)",
    )
    parser.add_argument(
        "--max-docs", type=int, default=None, help="use at most this many documents per class"
    )
    parser.add_argument("--held-out-fraction", type=float, default=0.2, help="fraction held out for accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="where to save the model (.npz)")
    add_config_arguments(parser, QualityConfig)
    args = parser.parse_args()
    config = config_from_arguments(QualityConfig, args)

    if args.offline_default:
        positives = reference_documentation_texts()
        negatives = synthetic_negatives(positives, num_docs=len(positives), seed=args.seed)
    else:
        if not args.positives or not args.negatives:
            parser.error("give --positives and --negatives files, or --offline-default")
        positives = load_training_texts(args.positives, args.max_docs)
        negatives = load_training_texts(args.negatives, args.max_docs)
    if args.max_docs is not None:
        positives, negatives = positives[: args.max_docs], negatives[: args.max_docs]

    model, metrics = train_and_evaluate(positives, negatives, config, args.held_out_fraction, args.seed)
    path = save_quality_model(model, args.out)
    print(f"{'positives (wiki)':<22}{len(positives):>10}")
    print(f"{'negatives (cc)':<22}{len(negatives):>10}")
    for name, value in metrics.items():
        print(f"{name:<22}{value:>10.4f}" if isinstance(value, float) else f"{name:<22}{value:>10}")
    print(f"{'non-zero weights':<22}{len(model.indices):>10}")
    print(f"saved {path} ({path.stat().st_size / 1024:.1f} KiB)")


if __name__ == "__main__":
    run_main(main)
