"""Tests for part3_pretrain.variety (messages as people write them, many ways to ask) and the open
formats of part3_pretrain.open_values (order ids, dates, amounts, promo codes, names, products)."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from part3_pretrain import domain, variety
from part3_pretrain.open_values import OPEN_ITEMS, date_formats, open_pools
from part3_pretrain.slots import PRODUCT_ITEMS, find_heldout_leaks, heldout_values, product_category, slot_values

REPO_ROOT = Path(__file__).resolve().parents[1]
N_MESSAGES = 3000


def _contexts(n: int, seed: int) -> list[domain.Context]:
    rng = random.Random(seed)
    return [domain.make_context(domain.INTENTS[i % len(domain.INTENTS)], open_pools(), rng) for i in range(n)]


def _composed(ctx: domain.Context, rng: random.Random) -> str:
    """A customer message asking with ``compose_request`` (as domain would once it is hooked in)."""
    spec = domain.phrasing("train").specs[ctx.intent]
    ref = domain.ref_phrase(ctx.slots, "customer", rng, spec.product_head)
    return domain.cap(variety.compose_request(ctx.intent, ref, rng, ctx.slots, ctx.topic))


@pytest.fixture(scope="module")
def varied() -> list[tuple[domain.Context, str, str]]:
    """(context, message, varied message): half the messages domain's, half composed requests."""
    rng = random.Random("varied")
    out = []
    for i, ctx in enumerate(_contexts(N_MESSAGES, seed=7)):
        text = ctx.text if i % 2 else _composed(ctx, rng)
        keep = [v for k, v in ctx.slots.items() if k != "customer" or i % 2]  # a composed request has no name
        out.append((ctx, text, variety._vary(text, keep, rng, ctx.intent)))
    return out


# ----------------------------------------------------------------------------- vary_message
def test_kept_values_survive_verbatim(varied: list[tuple[domain.Context, str, str]]) -> None:
    for i, (ctx, text, out) in enumerate(varied):
        for slot, value in ctx.slots.items():
            if slot == "customer" and not i % 2:
                continue
            assert value in text, (value, text)
            assert value in out and domain.mentions(out, value), (value, out)
        assert "\n" not in out and out == out.strip() and "  " not in out


@pytest.mark.parametrize(
    "text, keep",
    [
        ("k4821 is late, where is it? Thanks, Hello Bakoru", ["k4821", "Hello Bakoru"]),
        ("Hi, my order $1,249.00 (x) - please, you're great. - Tilven", ["$1,249.00", "(x)", "Tilven"]),
        ("Hello Kettle arrived broken. Please help.", ["Hello Kettle"]),
        ("thanks thanks thanks please you your", ["thanks", "you"]),
        ("Bakoru's order #QX-77120 and the 23rd of October", ["Bakoru", "QX-77120", "the 23rd of October"]),
    ],
)
def test_kept_values_survive_awkward_messages(text: str, keep: list[str]) -> None:
    for seed in range(300):
        out = variety._vary(text, keep, random.Random(seed), None)
        assert all(k in out and domain.mentions(out, k) for k in keep), (seed, out)


def test_vary_message_is_deterministic_and_varies(varied: list[tuple[domain.Context, str, str]]) -> None:
    for ctx, text, _ in varied[:200]:
        keep = list(ctx.slots.values())
        a = variety.vary_message(text, keep, random.Random(text), ctx.intent)
        assert a == variety.vary_message(text, keep, random.Random(text), ctx.intent)
    changed = sum(out != text for _, text, out in varied)
    assert changed >= 0.7 * len(varied)


def test_vary_message_does_not_touch_the_global_rng() -> None:
    random.seed(5)
    expected = random.random()
    random.seed(5)
    for ctx in _contexts(50, seed=1):
        variety.vary_message(ctx.text, list(ctx.slots.values()), random.Random(0), ctx.intent)
    assert random.random() == expected


def test_same_output_under_different_hash_seeds() -> None:
    code = (
        "import random; from part3_pretrain import variety; "
        "rng = random.Random(3); "
        "print([variety.vary_message('Hi, where is my order #A1234? Thanks, Kai Bo', ['A1234', 'Kai Bo'], rng, "
        "i) for i in variety.CORES for _ in range(5)])"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO_ROOT)},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1


def test_every_change_happens(varied: list[tuple[domain.Context, str, str]]) -> None:
    outs = [out for _, _, out in varied]
    joined = "\n".join(outs)
    for phrase in ("Dear ", "Kind regards", "quick q:", "hey ", " pls ", " u ", "??", "!!!", "Also, "):
        assert phrase in joined, phrase
    assert any(f in joined for f in variety.FILLERS) and any(f in joined for f in variety.COMPLAINT_FILLERS)
    free = [
        "".join(p for p, kept in variety._segments(o, sorted(c.slots.values(), key=len, reverse=True)) if not kept)
        for c, _, o in varied
    ]
    assert sum(f == f.lower() for f in free) > 0.15 * len(free)
    words = set(re.findall(r"[a-z]+", joined.lower()))
    assert {"recieved", "w", "thx"} & words


def test_complaint_extras_only_with_complaints() -> None:
    rng = random.Random(0)
    text = "Where is my order #A1234."
    outs = [variety.vary_message(text, ["A1234"], rng, "order_status") for _ in range(2000)]
    assert not any(f in o for o in outs for f in variety.COMPLAINT_FILLERS)
    assert not any("!!!" in o for o in outs)
    with pytest.raises(ValueError, match="unknown intent"):
        variety.vary_message(text, ["A1234"], rng, "no_such_intent")


def test_no_heldout_phrasing_or_value(varied: list[tuple[domain.Context, str, str]]) -> None:
    outs = [out for _, _, out in varied]
    assert domain.template_leaks(outs) == []
    assert find_heldout_leaks(outs) == []
    tables = (
        variety.FILLERS
        + variety.COMPLAINT_FILLERS
        + variety.SECOND_REQUESTS
        + variety.FORMAL_OPENERS
        + variety.FORMAL_LEADS
        + variety.FORMAL_CLOSINGS
        + variety.CASUAL_OPENERS
        + variety.CASUAL_CLOSERS
    )
    assert domain.template_leaks(tables) == []
    # every request template, with an order and a product ref
    fill = {"amount": "$5.00", "carrier": "UPS", "promo_code": "SAVE5"}
    requests = [
        t.format(ref=ref, **fill)
        for intent in domain.INTENTS
        for t in variety.request_phrases(intent)
        for ref in ("order #A1234", "my Bakoru Kettle")
    ]
    assert domain.template_leaks(requests, limit=100) == []


def test_fillers_and_second_requests_ask_for_no_intent() -> None:
    assert len(variety.FILLERS) >= 40 and len(variety.SECOND_REQUESTS) >= 25
    for text in variety.FILLERS + variety.COMPLAINT_FILLERS + variety.SECOND_REQUESTS + variety.FORMAL_LEADS:
        assert not [n for n, r in domain.KEYWORD_RES.items() if r.search(text)], text
    assert variety.COMPLAINT_INTENTS == {spec.name for spec in domain.INTENT_SPECS if spec.apology}


# ----------------------------------------------------------------------------- compose_request
def test_compose_request_covers_every_intent() -> None:
    assert list(variety.CORES) == list(domain.INTENTS)
    for spec in domain.INTENT_SPECS:
        cores = [variety._core_parts(c) for c in variety.CORES[spec.name]]
        assert len(cores) >= 6 and {p for p, _, _ in cores} == {"me", "you"}, spec.name
        hits = 0
        for _, _, text in cores:
            assert "{ref}" in text and all(f"{{{e}}}" in text for e in spec.extras), (spec.name, text)
            hits += bool(domain.KEYWORD_RES[spec.name].search(text.replace("{ref}", " ")))
        assert hits >= 0.6 * len(cores), spec.name
        assert len(variety.request_phrases(spec.name)) >= 60


def test_compose_request_states_ref_and_extras() -> None:
    rng = random.Random(1)
    for ctx in _contexts(500, seed=3):
        text = _composed(ctx, rng)
        assert "{" not in text and "}" not in text
        assert all(domain.mentions(text, v) for k, v in ctx.slots.items() if k != "customer"), text
    assert variety.compose_request("cancel_order", "order #A1", random.Random(0)) == variety.compose_request(
        "cancel_order", "order #A1", random.Random(0)
    )
    with pytest.raises(ValueError, match="unknown intent"):
        variety.request_phrases("nope")


def test_product_question_topics() -> None:
    for topic, word in (("dims", r"dimension|measure|big"), ("colors", r"colou?r"), ("material", r"made|material")):
        phrases = variety.request_phrases("product_question", topic)
        assert phrases and all(re.search(word, p) for p in phrases), topic
    assert len(variety.request_phrases("product_question")) > len(variety.request_phrases("product_question", "dims"))


# ----------------------------------------------------------------------------- open_values formats
ID_SHAPES = {
    "A1234": r"[A-Z]\d{4}",
    "QX-77120": r"[A-Z]{2,3}-\d{4,6}",
    "88231": r"\d{5,8}",
    "k4821": r"[a-z]\d{4,5}",
    "W2391884": r"[A-Z]\d{7}",
    "ORD-55821": r"(?:ORD|WEB|SO)-\d{5,6}",
    "2024-118830": r"20\d\d-\d{6}",
    "BX7-2291": r"[A-Z]{2}\d-\d{4}",
}


def test_open_order_ids_take_every_shape() -> None:
    ids = open_pools()["order_id"]
    shape_of = {name: re.compile(rx) for name, rx in ID_SHAPES.items()}
    counts = {name: sum(bool(rx.fullmatch(i)) for i in ids) for name, rx in shape_of.items()}
    assert all(n > 1000 for n in counts.values()), counts
    assert counts["A1234"] > 0.4 * len(ids)  # the generator's own shape stays the most common
    assert all(any(rx.fullmatch(i) for rx in shape_of.values()) for i in ids)
    assert not any(i.startswith("#") for i in ids)
    held = {h.upper() for h in slot_values("heldout")["order_id"]}
    assert not any(i.upper() in held for i in ids)


def test_open_dates_are_train_dates_in_every_format() -> None:
    dates = set(open_pools()["date"])
    train, held = slot_values("train")["date"], set(slot_values("heldout")["date"])
    assert date_formats("October 23") == (
        "October 23",
        "Oct 23",
        "23/10",
        "10/23",
        "October 23rd",
        "23 October",
        "the 23rd of October",
        "2026-10-23",
    )
    assert [f for f in date_formats("May 11")][4:7] == ["May 11th", "11 May", "the 11th of May"]
    assert set(train) <= dates
    allowed = {f for d in train for f in date_formats(d)}
    assert dates <= allowed and len(dates) > 6 * len(train)
    for fmt in (
        r"[A-Z][a-z]{2} \d+",
        r"\d+/\d+",
        r"[A-Z][a-z]+ \d+(?:st|nd|rd|th)",
        r"\d+ [A-Z][a-z]+",
        r"the .* of .*",
    ):
        assert any(re.fullmatch(fmt, d) for d in dates), fmt
    assert any(re.fullmatch(r"2026-\d\d-\d\d", d) for d in dates)
    months = "January February March April May June July August September October November December".split()
    for d in dates:  # a numeric date is no held-out date in either reading
        if re.fullmatch(r"\d+/\d+", d):
            a, b = map(int, d.split("/"))
            assert not {f"{months[a - 1]} {b}" if a <= 12 else "", f"{months[b - 1]} {a}" if b <= 12 else ""} & held


def test_open_amounts_codes_names_and_products() -> None:
    pools = open_pools()
    amounts = pools["amount"]
    for rx in (r"\$\d+\.\d\d", r"£\d+\.\d\d", r"€\d+", r"\d+\.\d\d (?:USD|EUR|GBP|CAD|AUD)", r"\$\d,\d{3}\.\d\d"):
        assert any(re.fullmatch(rx, a) for a in amounts), rx
    held_cents = {round(float(a[1:]) * 100) for a in slot_values("heldout")["amount"]}
    assert not any(round(float(re.sub(r"[^\d.]", "", a)) * 100) in held_cents for a in amounts)
    codes = pools["promo_code"]
    for rx in (r"[A-Z]+\d+", r"[a-z]+\d+", r"[A-Z]+-\d+", r"[A-Z]+202\d"):
        assert any(re.fullmatch(rx, c) for c in codes), rx
    held_codes = {c.upper() for c in slot_values("heldout")["promo_code"]}
    assert not any(c.upper().replace("-", "") in held_codes for c in codes)
    names = pools["customer"]
    two = [n for n in names if " " in n]
    assert 0.2 * len(names) < len(two) < 0.6 * len(names)
    assert any(re.search(r"(?:son|ez|ova|ski)$", n) for n in two)
    held = set(heldout_values())
    assert not any(set(n.split()) & held for n in names)


def test_open_products_have_categories() -> None:
    pools = open_pools()
    nouns = {n: c for c, ns in OPEN_ITEMS.items() for n in ns}
    assert sum(len(ns) for ns in OPEN_ITEMS.values()) >= 150 and not set(nouns) & set(PRODUCT_ITEMS)
    assert set(OPEN_ITEMS) == set(PRODUCT_ITEMS.values())
    opened = [p for p in pools["product"] if not any(p.endswith(i) for i in PRODUCT_ITEMS)]
    assert len(opened) > 0.3 * len(pools["product"])
    for cat, products in pools.products_by_category.items():
        for p in products:
            item = next((i for i in PRODUCT_ITEMS if p.endswith(i)), None)
            if item is not None:
                assert product_category(p) == cat, p
            else:
                assert nouns[max((n for n in nouns if p.endswith(" " + n)), key=len)] == cat, p
    apparel = set(pools.products_in(("apparel",)))
    assert any(p.endswith(" Sneakers") for p in apparel) and not any(p.endswith(" Kettle") for p in apparel)
