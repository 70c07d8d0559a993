"""Job metrics on fixed replies, against values worked out by hand.

Each reply games one thing: it copies everything, invents an order id, answers another intent,
or says nothing. A metric must fail the reply that games it.
"""

from __future__ import annotations

import random

import pytest

from part4_sft import job_metrics as J
from part4_sft import metrics as M

ROW = {
    "context": "Hi, this is Leila. My order #T1187 with the Coastal Running Shoes from March 3 arrived damaged.",
    "intent": "damaged_item",
    "slots": {"customer": "Leila", "order_id": "T1187", "product": "Coastal Running Shoes", "date": "March 3"},
    "reference": "x",
}
COPIES_ALL = (
    "I'm so sorry about the damage, Leila. Your Coastal Running Shoes from order #T1187 (ordered "
    "March 3) arrived damaged; I've sent a free replacement that ships today. Have a great day!"
)
INVENTS = (
    "I'm so sorry about the damage, Leila. Your Maple Running Shoes from order #N8343 arrived damaged; "
    "I've sent a free replacement that ships today. Have a great day!"
)
OFF_INTENT = (
    "Thanks for reaching out, Leila. Order #T1187 with the Coastal Running Shoes from March 3 is packed "
    "and scheduled to ship today; I've emailed you the tracking link. Have a great day!"
)
EMPTY = ""


def test_copying_everything_scores_full_marks():
    j = J.judge_reply(COPIES_ALL, ROW)
    assert j["specifics"] == ["T1187", "Coastal Running Shoes", "March 3", "Leila"]
    assert j["specifics_hit"] == j["specifics"]
    assert j["invented"] == [] and j["intent_ok"] is True
    assert j["rating"] == 5.0 and j["rules"] == []


def test_invented_order_and_product_are_caught():
    j = J.judge_reply(INVENTS, ROW)
    assert j["invented"] == ["order_id:N8343", "product:maple running shoes"]
    assert j["specifics_hit"] == ["Leila"]  # 1 of 4
    assert "ignores_specifics" in j["rules"] and j["rating"] < 4.0


def test_off_intent_reply_fails_intent_but_keeps_specifics():
    j = J.judge_reply(OFF_INTENT, ROW)
    assert j["intent_ok"] is False and "off_intent" in j["rules"]
    assert len(j["specifics_hit"]) == 4 and j["invented"] == []


def test_empty_reply_scores_nothing():
    j = J.judge_reply(EMPTY, ROW)
    assert j["specifics_hit"] == [] and j["invented"] == [] and j["intent_ok"] is False
    assert j["rating"] == 1.0


def test_aggregate_matches_hand_computed_values():
    rows = [ROW] * 4
    out = J.job_metrics(rows, [COPIES_ALL, INVENTS, OFF_INTENT, EMPTY], n_boot=200, seed=0)
    # specifics: 4 + 1 + 4 + 0 restated of 16
    assert out["specifics_recall"]["value"] == pytest.approx(9 / 16)
    assert (out["specifics_restated"], out["specifics_in_messages"]) == (9, 16)
    assert out["invented_share"]["value"] == pytest.approx(1 / 4) and out["invented_count"] == 1
    assert out["intent_accuracy"]["value"] == pytest.approx(2 / 4)  # copies-all and invents
    assert out["rubric_pass"]["value"] == pytest.approx(1 / 4)  # only copies-all rates >= 4.0
    ratings = [J.judge_reply(r, ROW)["rating"] for r in (COPIES_ALL, INVENTS, OFF_INTENT, EMPTY)]
    assert out["rubric_mean"]["value"] == pytest.approx(sum(ratings) / 4)
    assert out["rubric_failed_rules"]["off_intent"] == 2  # off-intent and empty
    for key in J.JOB_KEYS:
        lo, hi = out[key]["ci"]
        assert lo <= out[key]["value"] <= hi


def test_without_slots_or_intent_absent_is_none_not_zero():
    row = {"context": "where is order #B2231? I paid $45.00 on June 2", "reference": "x"}
    out = J.job_metrics([row], ["Order #B2231 for $45.00 ships today."], n_boot=50)
    assert out["intent_accuracy"] is None and out["rubric_pass"] is None and out["rubric_mean"] is None
    assert out["rubric_failed_rules"] is None and out["specifics_basis"] == "detected"
    # detected specifics: the order id, the amount and the date; the reply restates two
    assert (out["specifics_restated"], out["specifics_in_messages"]) == (2, 3)
    assert out["invented_share"]["value"] == 0.0
    bad = J.job_metrics([row], ["Order #Q9999 ships on July 4."], n_boot=50)
    assert bad["invented_count"] == 1 and bad["specifics_recall"]["value"] == 0.0


def test_message_without_specifics_gives_absent_recall():
    out = J.job_metrics([{"context": "hello, can you help me?", "reference": "x"}], ["Sure."], n_boot=20)
    assert out["specifics_recall"] is None and out["invented_share"]["value"] == 0.0


@pytest.mark.parametrize(
    "reply,message,expected",
    [
        ("Your refund of $23.99 is on its way.", "refund of $23.99 please", []),
        ("Your refund of $24.00 is on its way.", "refund of $23.99 please", ["amount:24.00"]),
        ("It shipped on March 3rd.", "ordered on March 3", []),
        ("It shipped on 4 March.", "ordered on March 3", ["date:march 4"]),
        ("within 5 business days, 24 hours, a 30-day window", "hi", []),  # not specifics
        ("your Coastal Running Shoes", "my coastal running shoes", []),  # case does not matter
        ("order number A1234 is fine", "order #a1234?", []),
    ],
)
def test_invented_detector(reply, message, expected):
    assert J.invented_specifics(reply, message) == expected


def test_shuffled_control_exposes_replies_that_ignore_the_message():
    rows = [
        dict(ROW),
        {
            **ROW,
            "context": "My order #K5521 was late with UPS.",
            "intent": "late_delivery",
            "slots": {"order_id": "K5521", "carrier": "UPS"},
        },
    ]
    own = J.job_metrics(rows, [COPIES_ALL, "Sorry for the delay on order #K5521 with UPS."], n_boot=20)
    ctrl = J.shuffled_control(rows, [COPIES_ALL, "Sorry for the delay on order #K5521 with UPS."], n_boot=20)
    assert own["specifics_recall"]["value"] == 1.0 and ctrl["specifics_recall"]["value"] == 0.0
    assert ctrl["invented_share"]["value"] == 1.0


def test_paired_diff_is_zero_for_identical_systems_and_signed():
    rows = [ROW] * 3
    a = [J.judge_reply(r, ROW) for r in (INVENTS, EMPTY, OFF_INTENT)]
    b = [J.judge_reply(r, ROW) for r in (COPIES_ALL, COPIES_ALL, OFF_INTENT)]
    same = J.paired_job_diff(rows, a, a, n_boot=50)
    assert all(same[k]["diff"] == 0 and same[k]["ci_low"] == same[k]["ci_high"] == 0 for k in same)
    d = J.paired_job_diff(rows, a, b, n_boot=200)
    assert d["specifics_recall"]["diff"] == pytest.approx((12 - 5) / 12)
    assert d["invented_share"]["diff"] == pytest.approx(-1 / 3)
    assert d["rubric_pass"]["diff"] == pytest.approx(2 / 3)


def test_ratio_bootstrap_ci_brackets_the_micro_average():
    num, den = [1, 0, 3, 2, 2], [2, 1, 3, 4, 2]
    lo, hi = M.bootstrap_ratio_ci(num, den, n_boot=500, seed=0)
    assert lo <= sum(num) / sum(den) <= hi


def test_multi_reference_text_metrics_take_the_best_reference():
    refs = [["the cat sat on the mat", "a dog ran in the park"]]
    assert M.rouge_l(refs, ["a dog ran in the park"]) == [pytest.approx(1.0)]
    assert M.corpus_bleu(refs, ["a dog ran in the park"]) == pytest.approx(1.0)
    from nltk.translate import bleu_score as nltk_bleu

    hyps = ["the dog sat in the park today"]
    want = nltk_bleu.corpus_bleu(
        [[r.split() for r in refs[0]]], [hyps[0].split()], smoothing_function=nltk_bleu.SmoothingFunction().method1
    )
    assert M.corpus_bleu(refs, hyps) == pytest.approx(want, abs=1e-12)
    assert float(M.bleu_from_stats(M.bleu_stats(refs, hyps).sum(0))) == pytest.approx(want, abs=1e-9)


# ------------------------------------------------------------------------------------ loops
@pytest.mark.parametrize(
    "text",
    [
        "I'm here to assist you with the process. To assist you with the process. To assist you.",
        "Your Thornburftwoodftwoodftwood has shipped.",
        "sorry sorry sorry for the delay",
        "we will we will we will send it",
    ],
)
def test_loops_finds_degenerate_replies(text: str) -> None:
    assert J.loops(text)


@pytest.mark.parametrize(
    "text",
    [
        "Hi Leila, sorry for the delay - order #B2222 is late with DHL. I'll send an update. Take care!",
        "Thanks, thanks for the quick reply about order 111111 and 121212.",
        "Your refund of $12.50 for order #A1234 was issued; you'll see it within 5 days. Have a great day!",
    ],
)
def test_loops_passes_ordinary_replies(text: str) -> None:
    assert not J.loops(text)


def _back_to_back_by_blocks(words: list[str], n: int) -> int:
    """Reference: the longest chain of equal adjacent n-word blocks, every start position tried."""
    best = 1
    for start in range(len(words)):
        k = 1
        block = words[start : start + n]
        while start + (k + 1) * n <= len(words) and words[start + k * n : start + (k + 1) * n] == block:
            k += 1
        best = max(best, k)
    return best


def test_back_to_back_repeats_match_the_block_by_block_count() -> None:
    rnd = random.Random(0)
    for _ in range(3000):
        words = [rnd.choice("ab c") for _ in range(rnd.randint(0, 30))]
        n = rnd.randint(1, 12)
        assert J._repeats_back_to_back(words, n) == _back_to_back_by_blocks(words, n), (words, n)


def test_loop_share_and_invented_order_ids_are_reported() -> None:
    rows = [{"context": "where is order #A1234?"}] * 4
    replies = ["order #A1234 has shipped.", "order #B9999 has shipped.", "shipped shipped shipped", "ok."]
    report = J.job_metrics(rows, replies, n_boot=50)
    assert report["loop_share"]["value"] == 0.25
    assert report["invented_order_id_count"] == 1


def test_an_id_the_message_writes_bare_is_not_invented() -> None:
    message = "yo is 2024-118830 shipped yet"
    assert J.invented_specifics("Order 2024-118830 has shipped.", message) == []
    assert J.invented_specifics("Order 2024-118831 has shipped.", message) == ["order_id:2024-118831"]
