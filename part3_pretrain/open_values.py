"""Open-ended slot values for pretraining text: too many to memorise, never a held-out value.

``open_pools()`` gives pseudo-word customer names and brand words (random consonant-vowel
syllables: "Bakoru", "Tilven"), random order ids, dollar amounts and promo codes, tens of
thousands of each (carriers: two thousand pseudo-word couriers, "Bakoru Express"), plus the train
side's own values (names, products, dates, carriers). A model
pretrained on text written with them cannot guess a specific from its prior and has to copy it
from the message. Every value is checked against ``slots.heldout_values()``, and brand words
never equal a product line of either side, so no product can be a held-out one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import lru_cache

from part3_pretrain.slots import PRODUCT_ITEMS, SlotPools, heldout_values, slot_values

_CONSONANTS, _VOWELS = "bcdfghjklmnprstvz", "aeiou"
_CARRIER_WORDS = ("Express", "Post", "Freight", "Couriers", "Logistics", "Parcel")


def _word(rng: random.Random, syllables: int) -> str:
    """A capitalised pseudo-word of consonant-vowel(-liquid) syllables."""
    return "".join(
        rng.choice(_CONSONANTS) + rng.choice(_VOWELS) + (rng.choice("nrls") if rng.random() < 0.3 else "")
        for _ in range(syllables)
    ).capitalize()


@lru_cache(maxsize=2)
def open_pools(seed: int = 1, size: int = 20000) -> SlotPools:
    """Large value pools with no held-out value (``size`` names, products, amounts and promo codes,
    ``3 * size`` order ids, besides the train values); a pure function of (seed, size)."""
    rng = random.Random(seed)
    held = set(heldout_values())
    train = slot_values("train")
    lines = {v.split()[0] for split in ("train", "heldout") for v in slot_values(split)["product"]}

    def fill(make: Callable[[], str], n: int) -> tuple[str, ...]:
        out: set[str] = set()
        while len(out) < n:
            v = make()
            if v not in held:
                out.add(v)
        return tuple(sorted(out))

    names = fill(lambda: _word(rng, rng.choice((2, 2, 3))), size)
    brands = [b for b in fill(lambda: _word(rng, 2), 4000) if b not in lines]
    couriers = [c for c in fill(lambda: _word(rng, 2), 2000) if c not in lines]
    items = list(PRODUCT_ITEMS)
    return SlotPools(
        {
            "customer": names + train["customer"],
            "order_id": fill(lambda: f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.randrange(1000, 10000)}", size * 3),
            "product": fill(lambda: f"{rng.choice(brands)} {rng.choice(items)}", size) + train["product"],
            "date": train["date"],
            "amount": fill(lambda: f"${rng.randrange(5, 900)}.{rng.randrange(100):02d}", size),
            "carrier": fill(lambda: f"{rng.choice(couriers)} {rng.choice(_CARRIER_WORDS)}", size // 10)
            + train["carrier"],
            "promo_code": fill(lambda: f"{_word(rng, 2).upper()}{rng.choice((5, 10, 15, 20, 25, 30))}", size),
        }
    )
