"""Slot values (names, products, order numbers, ...) split once into train / held-out, so tests use unseen values.

One module serves every text generator in the project: the part-3 pretraining corpus and the
part-4 SFT pairs draw only from the ``train`` side (the corpus's "dialogue" kind also from the
open-ended pools of ``open_values``, which hold no held-out value), and the part-4 test contexts
only from the ``heldout`` side. Generators take their values as a ``SlotPools`` (``split_pools``).
Evaluation is therefore on slot values the model has never seen, and
``find_heldout_leaks`` lets any generator (or user data) be checked for that rather than trusting it.

The partition is a pure function of the constants below (seeded ``random.Random``), so it is
identical on every machine and in every process, independent of PYTHONHASHSEED.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache

SPLITS = ("train", "heldout")
_PARTITION_SEED = 20261121
HELDOUT_FRACTION = 0.2

# First names chosen to be unambiguous as words (no "Grace", "June", "Will", ...), so a
# word-boundary search for a held-out name never hits ordinary English.
_FIRST_NAMES = (
    "Aaliyah Abdul Adebayo Aiko Alejandro Amara Anders Anika Arjun Astrid Beatriz Bjorn Camila "
    "Chidi Chloe Dario Dmitri Elif Emeka Esther Farah Fatima Felipe Freya Gustavo Hana Hamza "
    "Helga Hiroshi Ines Ingrid Isabela Jamal Javier Jelena Kai Kalani Kenji Keziah Lars Leila "
    "Lorenzo Lucia Malik Mateo Mei Mikael Nadia Naveen Nia Nikolai Noor Oksana Olga Omar Oren "
    "Paulo Priya Quentin Rafael Rania Ravi Rosa Saanvi Sakura Samir Sanjay Selin Sven Tariq "
    "Thiago Tomas Ulla Valentina Vikram Wei Ximena Yara Yusuf Zainab Zara Zoltan Anouk Bogdan "
    "Cyrus Dalia Eamon Femi Giorgio Hugo Ilse Joaquin Kamal Lotte Marisol Nkechi Odile Pietro"
).split()

# Product lines x items. Held-out products are new combinations of known words, so a model can
# copy them from the context (byte-level BPE pieces it knows) but has never seen the phrase.
_PRODUCT_LINES = (
    "Aurora Summit Cedar Harbor Nimbus Willow Ember Coastal Alpine Meadow Granite Lumen "
    "Solstice Tundra Juniper Cobalt Sierra Maple Orbit Driftwood"
).split()
PRODUCT_ITEMS: dict[str, str] = {
    # item -> category (the category decides which intents make sense, e.g. sizes for apparel)
    "Wool Sweater": "apparel",
    "Rain Jacket": "apparel",
    "Running Shoes": "apparel",
    "Denim Jeans": "apparel",
    "Linen Shirt": "apparel",
    "Hiking Boots": "apparel",
    "Wireless Earbuds": "electronics",
    "Smart Watch": "electronics",
    "Bluetooth Speaker": "electronics",
    "Laptop Stand": "electronics",
    "Phone Charger": "electronics",
    "Noise-Cancelling Headphones": "electronics",
    "Coffee Maker": "home",
    "Desk Lamp": "home",
    "Cast Iron Skillet": "home",
    "Throw Blanket": "home",
    "Air Purifier": "home",
    "Bamboo Cutting Board": "eco",
    "Reusable Water Bottle": "eco",
    "Organic Cotton Tote": "eco",
    "Beeswax Food Wraps": "eco",
    "Face Moisturizer": "beauty",
    "Vitamin C Serum": "beauty",
    "Yoga Mat": "fitness",
    "Adjustable Dumbbells": "fitness",
}

_CARRIERS = ("UPS", "FedEx", "DHL", "USPS", "OnTrac", "Canada Post", "Purolator", "Royal Mail")
_PROMO_WORDS = ("SPRING", "SUMMER", "WELCOME", "SAVE", "FALL", "HOLIDAY", "FRESH", "THANKS", "VIP", "FLASH")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_N_ORDER_IDS = 5000
_N_AMOUNTS = 800


def _split(values: Iterable[str], rng: random.Random, frac: float = HELDOUT_FRACTION) -> dict[str, tuple[str, ...]]:
    """Shuffle deterministically, then cut: the first ``frac`` of the values are held out."""
    vals = sorted(set(values))
    rng.shuffle(vals)
    n_held = max(1, round(len(vals) * frac))
    return {"heldout": tuple(vals[:n_held]), "train": tuple(vals[n_held:])}


def _order_ids(rng: random.Random) -> list[str]:
    ids: set[str] = set()
    while len(ids) < _N_ORDER_IDS:
        ids.add(f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.randrange(1000, 10000)}")
    return sorted(ids)


def _amounts(rng: random.Random) -> list[str]:
    out: set[str] = set()
    while len(out) < _N_AMOUNTS:
        out.add(f"${rng.randrange(5, 400)}.{rng.choice((0, 49, 95, 99, 50, 25)):02d}")
    return sorted(out)


@lru_cache(maxsize=1)
def _partition() -> dict[str, dict[str, tuple[str, ...]]]:
    rng = random.Random(_PARTITION_SEED)
    dates = [f"{m} {d}" for m, n in zip(_MONTHS, _MONTH_DAYS, strict=False) for d in range(1, n + 1)]
    products = [f"{line} {item}" for line in _PRODUCT_LINES for item in PRODUCT_ITEMS]
    promo = [f"{w}{n}" for w in _PROMO_WORDS for n in (5, 10, 15, 20, 25, 30, 40, 50)]
    pools = {
        "customer": _split(_FIRST_NAMES, rng),
        "product": _split(products, rng),
        "order_id": _split(_order_ids(rng), rng),
        "date": _split(dates, rng),
        "amount": _split(_amounts(rng), rng),
        "carrier": {"train": _CARRIERS[:6], "heldout": _CARRIERS[6:]},
        "promo_code": _split(promo, rng),
    }
    return {split: {slot: pool[split] for slot, pool in pools.items()} for split in SPLITS}


SLOT_NAMES = ("customer", "product", "order_id", "date", "amount", "carrier", "promo_code")


def slot_values(split: str) -> dict[str, tuple[str, ...]]:
    """All values of every slot on one side of the partition: ``slot -> tuple of strings``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return dict(_partition()[split])


class SlotPools:
    """Where a text generator draws its slot values from: slot -> candidate values (every slot of
    ``SLOT_NAMES``), plus the products grouped by category (which products an intent can be about).

    ``split_pools("train")`` / ``split_pools("heldout")`` are the two sides of the partition;
    ``part3_pretrain.open_values.open_pools()`` is an open-ended source for pretraining text.
    """

    def __init__(self, values: Mapping[str, Sequence[str]], category_of: Callable[[str], str] | None = None) -> None:
        """``category_of``: a product's category (default ``product_category``, which knows only the
        items of ``PRODUCT_ITEMS``; ``open_values`` passes its own for its open product names)."""
        missing = [slot for slot in SLOT_NAMES if not values.get(slot)]
        if missing:
            raise ValueError(f"slot pools need values for every slot; none for {missing}")
        self.values: dict[str, tuple[str, ...]] = {slot: tuple(values[slot]) for slot in SLOT_NAMES}
        category_of = category_of or product_category
        by_cat: dict[str, list[str]] = {}
        for product in self.values["product"]:
            by_cat.setdefault(category_of(product), []).append(product)
        self.products_by_category: dict[str, tuple[str, ...]] = {cat: tuple(v) for cat, v in sorted(by_cat.items())}
        self._products_in: dict[tuple[str, ...], tuple[str, ...]] = {}

    def products_in(self, categories: Sequence[str]) -> tuple[str, ...]:
        """The products of ``categories``, category by category in the order given (memoised: a
        generator draws from the same few category lists thousands of times)."""
        key = tuple(categories)
        if key not in self._products_in:
            self._products_in[key] = tuple(p for c in key for p in self.products_by_category.get(c, ()))
        return self._products_in[key]

    def __getitem__(self, slot: str) -> tuple[str, ...]:
        return self.values[slot]


@lru_cache(maxsize=2)
def split_pools(split: str) -> SlotPools:
    """``SlotPools`` of one side of the partition (built once per process)."""
    return SlotPools(slot_values(split))


def product_category(product: str) -> str:
    """Category of a product value ("apparel", "electronics", ...), from its item words."""
    for item, category in PRODUCT_ITEMS.items():
        if product.endswith(item):
            return category
    raise KeyError(f"unknown product {product!r}")


def heldout_values() -> tuple[str, ...]:
    """Every held-out value of every slot (the strings that must never appear in training text)."""
    return tuple(v for vals in slot_values("heldout").values() for v in vals)


_WORD = re.compile(r"\w+")


def _boundary_pattern(values: Iterable[str]) -> re.Pattern[str]:
    # Longest first so "Royal Mail" wins over a shorter prefix; (?<!\w)/(?!\w) so "March 3"
    # does not match "March 31" and "A1234" matches "#A1234" but not "XA12345".
    vals = sorted(values, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(v) for v in vals) + r")(?!\w)")


@lru_cache(maxsize=1)
def heldout_pattern() -> re.Pattern[str]:
    """Any held-out value as a whole token sequence (the search ``find_heldout_leaks`` makes),
    for a generator that redraws a made-up string until it holds none."""
    return _boundary_pattern(heldout_values())


def find_heldout_leaks(texts: Iterable[str], limit: int = 20) -> list[str]:
    """Held-out values found in ``texts`` (at most ``limit`` distinct ones; empty means clean).

    A value can only occur if every word of it occurs, so one cheap pass collects the words and
    the exact boundary-aware search runs with the few candidate values left (10x faster on the
    default corpus than searching for all of them).
    """
    texts = list(texts)
    words: set[str] = set()
    for text in texts:
        words.update(_WORD.findall(text))
    candidates = [v for v in heldout_values() if all(w in words for w in _WORD.findall(v))]
    if not candidates:
        return []
    pattern, found = _boundary_pattern(candidates), []
    for text in texts:
        for m in pattern.finditer(text):
            if m.group(0) not in found:
                found.append(m.group(0))
                if len(found) >= limit:
                    return found
    return found
