"""Tests for part3_pretrain.domain (the retail world part 3's corpus and part 4's generator share)
and part3_pretrain.open_values: the template partition, contexts and good replies written from
injected slot pools, the open-ended pools, and the "dialogue" pretraining documents."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from part3_pretrain import domain
from part3_pretrain.agents import agent_documents
from part3_pretrain.open_values import open_pools
from part3_pretrain.slots import PRODUCT_ITEMS, SlotPools, find_heldout_leaks, heldout_values, slot_values, split_pools

REPO_ROOT = Path(__file__).resolve().parents[1]
ORDER_ID = re.compile(r"(?<!\w)[A-Z]\d{4}(?!\w)")


@pytest.fixture(scope="module")
def docs() -> list[str]:
    return agent_documents(2000, seed=0, careful=True)


# ----------------------------------------------------------------------------- module boundaries
def test_part3_never_imports_part4() -> None:
    code = (
        "import sys; import part3_pretrain.domain, part3_pretrain.corpus, part3_pretrain.pretrain; "
        "print(sorted(m for m in sys.modules if m.startswith('part4_sft')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- template partition
def test_template_partition_shape() -> None:
    held = domain._template_partition()
    for name, items, _split_from in domain._partition_lists():
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(items):
            groups.setdefault(domain._topic_of(t)[0], []).append(i)
        for topic, idxs in groups.items():
            n_held = sum(i in held[name] for i in idxs)
            n_train = len(idxs) - n_held
            assert n_held <= max(1, round(len(idxs) / 4)), (name, topic)
            assert n_train >= (2 if len(idxs) >= 3 else 1), (name, topic)
        if name.split(".")[0] in domain.INTENTS:
            # every intent list, and every topic of a topic-tagged list, has held-out phrasing
            assert all(any(i in held[name] for i in idxs) for idxs in groups.values()), name
        elif not name.startswith(("refs.", "date_suffixes.")):
            assert held[name], name
    refs = [name for name, items, _ in domain._partition_lists() if name.startswith(("refs.", "date_suffixes."))]
    assert sum(bool(held[name]) for name in refs) >= 7
    counts = domain._template_partition_counts()
    assert counts["closes"] == (10, 4) and counts["product_question.body"] == (6, 3)


def test_sides_use_disjoint_templates() -> None:
    train, heldout = domain.phrasing("train"), domain.phrasing("heldout")
    for intent in domain.INTENTS:
        for part in ("customer", "scenario", "body", "next"):
            a, b = getattr(train.specs[intent], part), getattr(heldout.specs[intent], part)
            assert a and b and not set(a) & set(b), (intent, part)
    assert not set(train.closes) & set(heldout.closes)
    assert not set(train.acks_apology + train.acks_notice + train.acks_thanks) & set(
        heldout.acks_apology + heldout.acks_notice + heldout.acks_thanks
    )
    # no held-out fragment is part of any train-side template, or of text both sides use
    train_text = [t for _, items, _ in domain._partition_lists() for t in items] + list(domain._always_train_texts())
    held_texts = {
        domain._topic_of(items[i])[1]
        for name, items, _ in domain._partition_lists()
        for i in domain._template_partition()[name]
    }
    train_only = [t for t in train_text if domain._topic_of(t)[1] not in held_texts]
    assert domain.template_leaks(" | ".join(domain._pieces(t)) for t in train_only) == []
    with pytest.raises(ValueError):
        domain.phrasing("test")


def test_template_leaks_finds_held_out_phrasing() -> None:
    held = domain._side_fragments("heldout")
    assert len(held) >= 50
    phrase = held[0]
    assert domain.template_leaks(["Hi. " + phrase.upper() + "!"]) == [phrase]
    assert domain.template_leaks(["nothing to see here", "Your order #A1234 has shipped. Take care"]) == []
    assert len(domain.template_leaks([" . ".join(held)], limit=5)) == 5


def test_template_partition_is_a_pure_function_of_the_tables() -> None:
    assert domain._template_partition.__wrapped__() == domain._template_partition()


# ----------------------------------------------------------------------------- slot pools
def test_slot_pools() -> None:
    train = split_pools("train")
    assert train is split_pools("train") and train.values == slot_values("train")
    assert train["order_id"] == slot_values("train")["order_id"]
    assert list(train.products_by_category) == sorted(set(PRODUCT_ITEMS.values()))
    apparel = train.products_in(("apparel",))
    assert apparel and all(train.products_by_category["apparel"] == apparel for _ in range(2))
    assert train.products_in(("eco", "apparel")) == train.products_by_category["eco"] + apparel
    with pytest.raises(ValueError, match="promo_code"):
        SlotPools({k: v for k, v in slot_values("train").items() if k != "promo_code"})


def test_contexts_and_replies_take_their_values_from_the_pools() -> None:
    pools = SlotPools(
        {**slot_values("train"), "customer": ("Zorblax",), "order_id": ("Q0001",), "product": ("Quux Yoga Mat",)}
    )
    rng = random.Random(0)
    for intent in domain.INTENTS:
        if intent == "exchange_size":  # needs apparel; the pool above has none
            continue
        ctx = domain.make_context(intent, pools, rng)
        assert ctx.slots.get("order_id", "Q0001") == "Q0001"
        assert ctx.slots.get("product", "Quux Yoga Mat") == "Quux Yoga Mat"
        assert ctx.slots.get("customer", "Zorblax") == "Zorblax"
        reply = domain.good_reply(ctx, pools, rng)
        assert all(domain.mentions(reply, v) for k, v in ctx.slots.items() if k != "customer")


# ----------------------------------------------------------------------------- open values
def test_open_pools_hold_no_heldout_value_and_are_large() -> None:
    pools = open_pools()
    assert pools is open_pools()
    held = set(heldout_values())
    assert not held & {v for vals in pools.values.values() for v in vals}
    assert find_heldout_leaks(" | ".join(vals) for vals in pools.values.values()) == []
    train = slot_values("train")
    for slot in ("customer", "order_id", "product", "amount", "promo_code"):
        assert len(pools[slot]) >= 10 * len(train[slot]), slot
        assert set(train[slot]) <= set(pools[slot]) or slot in ("amount", "promo_code", "order_id"), slot
    # brand words are never a product line of either side, so no product is a held-out one
    lines = {p.split()[0] for split in ("train", "heldout") for p in slot_values(split)["product"]}
    opened = [p for p in pools["product"] if p not in train["product"]]
    assert opened and not {p.split()[0] for p in opened} & lines
    assert set(pools.products_by_category) == set(PRODUCT_ITEMS.values())
    assert open_pools.__wrapped__().values == pools.values  # a pure function of (seed, size)


# ----------------------------------------------------------------------------- dialogue documents
def test_dialogue_documents_format_and_phrasing(docs: list[str]) -> None:
    assert len(docs) == 2000
    for doc in docs:
        customer, agent = doc.split("\n")
        assert customer.startswith("Customer: ") and agent.startswith("Agent: ")
        assert "{" not in doc and "}" not in doc and "\x00" not in doc
    assert find_heldout_leaks(docs) == []
    assert domain.template_leaks(docs) == []
    assert domain._find_fragments(docs, "train", 5) != []  # train-side phrasing, not some other
    assert len(set(docs)) == len(docs)


def test_dialogue_documents_values_vary(docs: list[str]) -> None:
    text = "\n".join(docs)
    ids = ORDER_ID.findall(text)
    assert len(set(ids)) >= 0.4 * len(ids) and len(set(ids)) > 500
    train = slot_values("train")
    # most specifics come from the open pools, not the small train pools a model could memorise
    assert sum(i in set(train["order_id"]) for i in set(ids)) < 0.2 * len(set(ids))
    names = Counter(m for m in re.findall(r"\b(?:this is|my name is) ([A-Z]\w+)", text))
    assert len(names) >= 0.8 * sum(names.values())


def test_dialogue_documents_restate_the_message(docs: list[str]) -> None:
    order_intents = {spec.name for spec in domain.INTENT_SPECS if any("O" in r for r in spec.refs)}
    checked = 0
    for i, doc in enumerate(docs):
        customer, agent = doc.split("\n")
        ids = ORDER_ID.findall(customer)
        if domain.INTENTS[i % len(domain.INTENTS)] in order_intents and ids:
            assert set(ids) == set(ORDER_ID.findall(agent)), doc  # the message's id, and no other
            checked += 1
    assert checked > 500


def test_dialogue_documents_cycle_intents_and_are_deterministic(docs: list[str]) -> None:
    assert agent_documents(50, seed=0, careful=True) == docs[:50]
    assert agent_documents(50, seed=1, careful=True) != docs[:50]
    assert agent_documents(0) == []
    random.seed(123)
    expected = random.random()
    random.seed(123)
    agent_documents(30, seed=2)
    assert random.random() == expected
    with pytest.raises(ValueError, match="n must be"):
        agent_documents(-1)
    # with explicit pools: the train values, written in the same way
    train_docs = agent_documents(40, seed=0, values=split_pools("train"))
    train_ids = set(slot_values("train")["order_id"])
    assert all(i in train_ids for d in train_docs for i in ORDER_ID.findall(d))


def test_reference_drills_repeat_the_listed_values_verbatim() -> None:
    drills = domain.reference_drills(300, seed=4)
    assert drills == domain.reference_drills(300, seed=4) != domain.reference_drills(300, seed=5)
    # The listed items, recovered from the ask's own template (values come in open formats).
    asks = [re.compile(re.escape(a).replace(re.escape("{items}"), "(.+)") + "$") for a in domain._DRILL_ASKS]
    listed = 0
    for doc in drills:
        customer, agent = doc.removeprefix("Customer: ").split("\nAgent: ")
        items = next(m.group(1) for a in asks if (m := a.match(customer))).split(", ")
        # an order id may change its prefix ("order 88231" -> "#88231"); the value itself never
        assert all(re.sub(r"^(?:#|order )", "", v) in agent for v in items), doc
        listed += len(items)
    assert listed > 1.5 * len(drills)  # 1-4 values each
    assert not find_heldout_leaks(drills) and not domain.template_leaks(drills)
