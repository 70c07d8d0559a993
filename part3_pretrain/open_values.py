"""Open-ended slot values for pretraining text: too many to memorise, never a held-out value.

``open_pools()`` gives pseudo-word customer names and brand words (random consonant-vowel
syllables: "Bakoru", "Tilven"), random order ids, amounts and promo codes, tens of thousands of
each (carriers: two thousand pseudo-word couriers, "Bakoru Express"), plus the train side's own
values (names, products, dates, carriers). A model pretrained on text written with them cannot
guess a specific from its prior and has to copy it from the message.

The values take the open formats people write, not only the generator's shapes:

- customer names: one pseudo-word ("Bakoru") or two ("Tilven Dorasen", some surnames with a
  real-looking ending: "-son", "-ez", "-ova", ...);
- order ids: half the generator's "A1234", the other half "QX-77120", "88231", "k4821",
  "W2391884", "ORD-55821", "2024-118830", "BX7-2291" (never a leading "#": templates add it);
- products: a brand word and either an item of ``slots.PRODUCT_ITEMS`` or an open noun phrase
  (an optional colour, style or material word and one of ~190 everyday nouns: "Bakoru Kettle",
  "Tilven Olive Duvet Cover");
- dates: the train dates ("October 23") and the same days as "Oct 23", "23/10", "10/23",
  "October 23rd", "23 October", "the 23rd of October", "2026-10-23";
- amounts: "$12.99", "£12.99", "€120", "49.50 USD", "$1,249.00";
- promo codes: "BAKO15", "welcome10", "BLACKFRIDAY-25", "SPRING2026".

Every value is checked against ``slots.heldout_values()``, and more strictly than by string:
no word of a name is a held-out name, no amount has a held-out amount's value, no order id or
promo code is a held-out one in other case or without its dash, and a numeric date is dropped
when its other reading ("3/10": March 10 or October 3) is a held-out date. Brand and descriptor
words never equal a product line of either side, so no product can contain a held-out one.

Categories: ``SlotPools`` groups products by category (``products_in``, for intents that make
sense only for some, e.g. a size exchange for apparel). Each open noun belongs to one of the
categories of ``PRODUCT_ITEMS`` (``OPEN_ITEMS``: a kettle is "home", sneakers are "apparel"), and
``open_pools`` passes that mapping to ``SlotPools`` as ``category_of``. So the categories stay the
six known ones, every open product is usable wherever its category is asked, and none shows up
for an intent that does not fit it (no size exchange for a kettle).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection
from functools import lru_cache

from part3_pretrain.slots import PRODUCT_ITEMS, SlotPools, heldout_values, product_category, slot_values

_CONSONANTS, _VOWELS = "bcdfghjklmnprstvz", "aeiou"
_CARRIER_WORDS = ("Express", "Post", "Freight", "Couriers", "Logistics", "Parcel")
_ID_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
_SURNAME_ENDINGS = (
    "son",
    "sen",
    "ez",
    "ova",
    "ski",
    "ton",
    "well",
    "berg",
    "man",
    "ley",
    "ford",
    "ini",
    "escu",
    "ovic",
)
_CURRENCY_CODES = ("USD", "EUR", "GBP", "CAD", "AUD")
_PROMO_WORDS = ("WELCOME", "BLACKFRIDAY", "CYBER", "NEWYEAR", "FREESHIP", "STUDENT", "FRIENDS", "BIRTHDAY", "EXTRA")
_PROMO_WORDS += ("SPRING", "SUMMER", "AUTUMN", "WINTER", "HELLO", "TAKE", "WEEKEND", "MEGA")
_MONTH_NAMES = "January February March April May June July August September October November December".split()

# Open nouns by category (the six of ``PRODUCT_ITEMS``); none of them is an item of it.
OPEN_ITEMS: dict[str, tuple[str, ...]] = {
    "apparel": tuple(
        "Scarf|Sneakers|Hoodie|T-Shirt|Cardigan|Parka|Beanie|Gloves|Socks|Leggings|Chinos|Blazer|Trench Coat|"
        "Sandals|Loafers|Ankle Boots|Swim Shorts|Pyjamas|Dressing Gown|Polo Shirt|Skirt|Dress|Jumpsuit|"
        "Fleece Jacket|Puffer Jacket|Overshirt|Baseball Cap|Sun Hat|Belt|Raincoat|Slippers|Trainers|Joggers|"
        "Shorts|Bucket Hat|Turtleneck".split("|")
    ),
    "electronics": tuple(
        "Power Bank|USB-C Cable|Webcam|Keyboard|Wireless Mouse|Monitor|Router|Smart Plug|E-Reader|Action Camera|"
        "Dash Cam|Soundbar|Turntable|Projector|Drawing Tablet|Portable SSD|Label Printer|Baby Monitor|"
        "Walkie Talkies|Gaming Headset|Ring Light|Microphone|Streaming Stick|Car Charger|Travel Adapter|"
        "Smart Speaker|Radio|Alarm Clock|Digital Camera|Tripod|Laptop Sleeve|Phone Case|HDMI Cable|Tablet".split("|")
    ),
    "home": tuple(
        "Kettle|Duvet Cover|Blender|Desk Chair|Rug|Toaster|Saucepan|Frying Pan|Dinner Plates|Mug Set|Teapot|"
        "Wine Glasses|Cutlery Set|Chef's Knife|Bath Towel|Pillow|Mattress Topper|Bedside Table|Bookshelf|"
        "Floor Lamp|Mirror|Curtains|Cushion|Vase|Picture Frame|Laundry Basket|Ironing Board|Vacuum Cleaner|"
        "Stand Mixer|Rice Cooker|Slow Cooker|Air Fryer|Food Processor|Casserole Dish|Baking Tray|Storage Jars|"
        "Shower Curtain|Doormat|Coat Rack|Shoe Rack|Wall Clock|Scented Candle|Dish Rack|Office Chair|"
        "Desk Fan|Bed Frame".split("|")
    ),
    "eco": tuple(
        "Compost Bin|Steel Straws|Solar Lantern|Refill Pouch|Shampoo Bar|Produce Bags|Lunch Box|Travel Cutlery|"
        "Coffee Cup|Water Filter Jug|Seed Kit|Cork Coasters|Wool Dryer Balls|Herb Planter|Rain Barrel|"
        "Bento Box|Soap Nuts|Dish Brush|Mesh Bags|Glass Jars|Beeswax Candle|Bamboo Toothbrush".split("|")
    ),
    "beauty": tuple(
        "Lip Balm|Hand Cream|Shampoo|Conditioner|Body Lotion|Sunscreen|Perfume|Eye Cream|Face Wash|Night Cream|"
        "Hair Oil|Nail Polish|Mascara|Makeup Brushes|Hair Dryer|Hair Straightener|Electric Toothbrush|"
        "Bath Salts|Body Scrub|Cleansing Balm|Sheet Mask|Beard Oil|Dry Shampoo|Toner".split("|")
    ),
    "fitness": tuple(
        "Tent|Camping Stove|Backpack|Sleeping Bag|Resistance Bands|Kettlebell|Jump Rope|Foam Roller|"
        "Pull-Up Bar|Exercise Bike|Rowing Machine|Treadmill|Gym Bag|Trekking Poles|Climbing Harness|"
        "Bike Helmet|Bike Lights|Cycling Gloves|Swim Goggles|Tennis Racket|Football|Yoga Block|Weight Bench|"
        "Fitness Tracker|Headlamp|Hammock|Cool Box".split("|")
    ),
}
_STYLE_WORDS = (
    "Classic Compact Mini Pro Ultra Lite Deluxe Everyday Travel Original Essential Premium Slim Max Plus "
    "Studio Urban Heritage Nordic Black White Navy Olive Grey Red Sand Charcoal Blush Mustard Teal Cream Rust"
).split()
_MATERIAL_WORDS = {
    "apparel": ("Cotton", "Wool", "Fleece", "Leather", "Linen", "Denim", "Cashmere", "Corduroy", "Suede"),
    "electronics": ("Wireless", "Smart", "Portable", "Digital", "Foldable"),
    "home": ("Ceramic", "Glass", "Oak", "Steel", "Marble", "Velvet", "Copper", "Enamel", "Stoneware"),
    "eco": ("Bamboo", "Recycled", "Cork", "Hemp", "Refillable"),
    "beauty": ("Vegan", "Unscented", "Travel-Size", "Hydrating", "Gentle"),
    "fitness": ("Lightweight", "Waterproof", "Insulated", "Ultralight", "Heavy-Duty"),
}


def _word(rng: random.Random, syllables: int) -> str:
    """A capitalised pseudo-word of consonant-vowel(-liquid) syllables."""
    return "".join(
        rng.choice(_CONSONANTS) + rng.choice(_VOWELS) + (rng.choice("nrls") if rng.random() < 0.3 else "")
        for _ in range(syllables)
    ).capitalize()


def _ordinal(day: int) -> str:
    """1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd"."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def date_formats(date: str) -> tuple[str, ...]:
    """Every surface format of a "Month D" date: itself, "Oct 23", "23/10", "10/23", "October 23rd",
    "23 October", "the 23rd of October", "2026-10-23"."""
    month, day = date.split()
    m, d = _MONTH_NAMES.index(month) + 1, int(day)
    return (
        date,
        f"{month[:3]} {d}",
        f"{d}/{m}",
        f"{m}/{d}",
        f"{month} {_ordinal(d)}",
        f"{d} {month}",
        f"the {_ordinal(d)} of {month}",
        f"2026-{m:02d}-{d:02d}",
    )


def _open_dates(held: Collection[str]) -> tuple[str, ...]:
    """The train dates in every format of ``date_formats``; a numeric "d/m" or "m/d" is left out when
    its other reading is a held-out date (or no date at all)."""
    held_md = {(_MONTH_NAMES.index(h.split()[0]) + 1, int(h.split()[1])) for h in held}
    out: list[str] = []
    for date in slot_values("train")["date"]:
        for value in date_formats(date):
            if re.fullmatch(r"\d+/\d+", value):
                a, b = map(int, value.split("/"))
                if (a, b) in held_md or (b, a) in held_md:
                    continue
            out.append(value)
    return tuple(dict.fromkeys(out))


def _order_id(rng: random.Random) -> str:
    """An order id: half the generator's "A1234", half one of seven other shapes."""

    def digits(lo: int, hi: int) -> str:  # lo..hi digits, the first not 0
        return str(rng.randrange(1, 10)) + "".join(rng.choice("0123456789") for _ in range(rng.randint(lo, hi) - 1))

    shape = rng.randrange(14)
    if shape < 7:
        return f"{rng.choice(_ID_LETTERS)}{rng.randrange(1000, 10000)}"  # A1234
    if shape == 7:
        return f"{''.join(rng.choices(_ID_LETTERS, k=rng.choice((2, 3))))}-{digits(4, 6)}"  # QX-77120
    if shape == 8:
        return digits(5, 8)  # 88231
    if shape == 9:
        return f"{rng.choice(_ID_LETTERS).lower()}{digits(4, 5)}"  # k4821
    if shape == 10:
        return f"{rng.choice(_ID_LETTERS)}{digits(7, 7)}"  # W2391884
    if shape == 11:
        return f"{rng.choice(('ORD', 'WEB', 'SO'))}-{digits(5, 6)}"  # ORD-55821
    if shape == 12:
        return f"{rng.randrange(2023, 2027)}-{digits(6, 6)}"  # 2024-118830
    return f"{''.join(rng.choices(_ID_LETTERS, k=2))}{rng.randrange(1, 10)}-{digits(4, 4)}"  # BX7-2291


def _amount(rng: random.Random) -> str:
    """An amount: "$12.99" (half), "£12.99", "€120", "49.50 USD" or "$1,249.00"."""
    dollars, cents = rng.randrange(5, 900), rng.choice((0, 49, 95, 99, 50, 25, rng.randrange(100)))
    shape = rng.randrange(8)
    if shape < 4:
        return f"${dollars}.{cents:02d}"
    if shape == 4:
        return f"£{dollars}.{cents:02d}"
    if shape == 5:
        return f"€{dollars}"
    if shape == 6:
        return f"{dollars}.{cents:02d} {rng.choice(_CURRENCY_CODES)}"
    return f"${rng.randrange(1, 10)},{rng.randrange(1000):03d}.{cents:02d}"


def _amount_cents(value: str) -> int:
    """The value of an amount in cents, whatever its currency and format."""
    return round(float(re.sub(r"[^\d.]", "", value)) * 100)


def _promo_code(rng: random.Random) -> str:
    """A promo code: "BAKO15" (half), "welcome10", "BLACKFRIDAY-25", "SPRING2026"."""
    word = _word(rng, 2).upper() if rng.random() < 0.5 else rng.choice(_PROMO_WORDS)
    number = rng.choice((5, 10, 15, 20, 25, 30, 40, 50))
    shape = rng.randrange(6)
    if shape < 3:
        return f"{_word(rng, 2).upper()}{number}"
    if shape == 3:
        return f"{word.lower()}{number}"
    if shape == 4:
        return f"{word}-{number}"
    return f"{word}{rng.randrange(2024, 2028)}"


def _customer(rng: random.Random) -> str:
    """A name: one pseudo-word (60%) or first and last (a pseudo-word, some with a surname ending)."""
    first = _word(rng, rng.choice((2, 2, 3)))
    if rng.random() < 0.6:
        return first
    if rng.random() < 0.5:
        return f"{first} {_word(rng, rng.choice((2, 3)))}"
    return f"{first} {_word(rng, rng.choice((1, 2)))}{rng.choice(_SURNAME_ENDINGS)}"


def _open_product(rng: random.Random, brands: list[str], lines: Collection[str]) -> tuple[str, str]:
    """(brand + item of PRODUCT_ITEMS, or brand + optional descriptor + open noun; its category)."""
    brand = rng.choice(brands)
    if rng.random() < 0.5:
        item = rng.choice(sorted(PRODUCT_ITEMS))
        return f"{brand} {item}", PRODUCT_ITEMS[item]
    category = rng.choice(sorted(OPEN_ITEMS))
    noun = rng.choice(OPEN_ITEMS[category])
    words = _STYLE_WORDS + list(_MATERIAL_WORDS[category])
    descriptor = rng.choice([w for w in words if w not in lines and w not in noun]) if rng.random() < 0.6 else ""
    return " ".join(w for w in (brand, descriptor, noun) if w), category


def _fill(make: Callable[[], str], n: int, ok: Callable[[str], bool]) -> tuple[str, ...]:
    """``n`` distinct values of ``make()`` that pass ``ok``, sorted (hash-order free)."""
    out: set[str] = set()
    while len(out) < n:
        v = make()
        if ok(v):
            out.add(v)
    return tuple(sorted(out))


@lru_cache(maxsize=2)
def open_pools(seed: int = 1, size: int = 20000) -> SlotPools:
    """Large value pools with no held-out value (``size`` names, products, amounts and promo codes,
    ``3 * size`` order ids, besides the train values; every train date in eight formats); a pure
    function of (seed, size)."""
    rng = random.Random(seed)
    held = set(heldout_values())
    held_upper = {h.upper().replace("-", "") for h in held}
    held_cents = {_amount_cents(a) for a in slot_values("heldout")["amount"]}
    train = slot_values("train")
    lines = {v.split()[0] for split in ("train", "heldout") for v in slot_values(split)["product"]}

    def clean(v: str) -> bool:
        return v not in held and v.upper().replace("-", "") not in held_upper and not set(v.split()) & held

    brands = [b for b in _fill(lambda: _word(rng, 2), 4000, clean) if b not in lines]
    couriers = [c for c in _fill(lambda: _word(rng, 2), 2000, clean) if c not in lines]
    categories: dict[str, str] = {}

    def product() -> str:
        name, category = _open_product(rng, brands, lines)
        categories[name] = category
        return name

    return SlotPools(
        {
            "customer": _fill(lambda: _customer(rng), size, clean) + train["customer"],
            "order_id": _fill(lambda: _order_id(rng), size * 3, clean),
            "product": _fill(product, size, clean) + train["product"],
            "date": _open_dates(slot_values("heldout")["date"]),
            "amount": _fill(lambda: _amount(rng), size, lambda v: clean(v) and _amount_cents(v) not in held_cents),
            "carrier": _fill(lambda: f"{rng.choice(couriers)} {rng.choice(_CARRIER_WORDS)}", size // 10, clean)
            + train["carrier"],
            "promo_code": _fill(lambda: _promo_code(rng), size, clean),
        },
        category_of=lambda p: categories.get(p) or product_category(p),
    )
