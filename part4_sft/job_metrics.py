"""Job metrics: does a reply answer *this* customer? (text overlap cannot tell)

A support reply is good when it addresses the customer's intent and restates their specifics
correctly. Per reply (:func:`judge_reply`) and over a set of replies (:func:`job_metrics`):

- **specifics recall**: of the specifics in the message (order id, product, date, amount,
  carrier, promo code, the customer's name), the share the reply restates verbatim
  (case-insensitive, whole words). Rows with ``slots`` (the synthetic data) use them; other rows
  use what :func:`find_specifics` detects in the message (order ids, amounts, dates, catalog
  products), and the report says which basis it used.
- **invented specifics**: the reply states an order id, amount, date or product that does not
  occur in the message (a reply about another order). Works on any text.
- **intent accuracy**: the rubric's intent test (``synthetic.rate_response`` does not fire
  ``off_intent``); needs the row's ``intent``.
- **rubric**: the rubric that rated the training pairs rates each reply (mean, share >= 4.0,
  counts per failed rule); needs ``intent`` and ``slots``.
- **loops**: the reply degenerates into a loop (:func:`loops`: the same words back to back three
  times, a phrase of four or more words twice, or a piece of a word stuttered, "ftwoodftwoodftwood").
  Works on any text.

What a row lacks is reported as absent (``None``), never as 0. Every rate has a 95% bootstrap CI
over rows, and :func:`paired_job_diff` gives paired differences of two systems on the same rows.
:func:`shuffled_control` scores replies against *other* rows' messages: a metric that replies
ignoring the message still pass is not measuring the job.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from part3_pretrain.domain import INTENTS, mentions
from part3_pretrain.slots import PRODUCT_ITEMS

from . import metrics
from .synthetic import HIGH_QUALITY_THRESHOLD, RUBRIC_RULES, rate_response

SPECIFIC_SLOTS = ("order_id", "product", "date", "amount", "carrier", "promo_code", "customer")
JOB_KEYS = ("specifics_recall", "invented_share", "intent_accuracy", "rubric_pass", "rubric_mean", "loop_share")

# ------------------------------------------------------------------------ finding specifics
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH_RE = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_ORDINAL = r"(?:st|nd|rd|th)?"
_DATE_RES = (
    re.compile(rf"\b(?P<m>{_MONTH_RE})\s+(?P<d>\d{{1,2}}){_ORDINAL}\b", re.I),  # March 3rd
    re.compile(rf"\b(?P<d>\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?(?P<m>{_MONTH_RE})", re.I),  # 3 March
)
_NUMERIC_DATE_RE = re.compile(r"\b(\d{4}-\d{1,2}-\d{1,2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?)\b")
_AMOUNT_RES = (
    re.compile(r"[$€£]\s?(\d[\d,]*(?:\.\d+)?)"),
    re.compile(r"\b(\d[\d,]*(?:\.\d+)?)\s?(?:dollars|usd|eur|euros|gbp|pounds)\b", re.I),
)
# An order id: after "#" or "order [number|no.|id]", a token with a digit; or a bare code of
# capital letters and 4+ digits ("A1234", "ORD-55821").
_ORDER_RES = (
    re.compile(r"#\s?([A-Za-z0-9][\w-]*\d[\w-]*|\d[\w-]*)"),
    re.compile(r"\border\s+(?:number\s+|no\.?\s+|id\s+)?#?([A-Za-z]*\d[\w-]*)", re.I),
    re.compile(r"\b([A-Z]{1,4}-?\d{4,})\b"),
)
_NOT_BRAND = {
    "your",
    "the",
    "my",
    "our",
    "a",
    "an",
    "new",
    "replacement",
    "this",
    "that",
    "their",
    "his",
    "her",
    "one",
    "same",
    "another",
    "correct",
    "right",
    "wrong",
    "free",
}
_PRODUCT_RE = re.compile(r"\b((?:[A-Z][\w'-]*\s+){1,2}(?:" + "|".join(re.escape(i) for i in PRODUCT_ITEMS) + r"))\b")
# Every pattern the judge reads a specific with, and the group that holds the value: where a
# reply writes a value (report pages mark them; ``find_specifics`` says which kind each one is).
SPECIFIC_PATTERNS: tuple[tuple[re.Pattern, int], ...] = (
    *((p, 1) for p in _ORDER_RES),  # the id, not "order " or "#"
    *((p, 0) for p in _AMOUNT_RES),  # "$34.50", currency and all
    *((p, 0) for p in _DATE_RES),
    (_NUMERIC_DATE_RE, 0),
    (_PRODUCT_RE, 0),
)


def _norm_date(month: str, day: str) -> str | None:
    m = next((full for full in _MONTHS if full.startswith(month.lower().rstrip(".")[:3])), None)
    return f"{m} {int(day)}" if m and 1 <= int(day) <= 31 else None


def _dates(text: str) -> set[str]:
    found = {_norm_date(m["m"], m["d"]) for r in _DATE_RES for m in r.finditer(text)}
    found |= {m.group(1) for m in _NUMERIC_DATE_RE.finditer(text)}
    return {d for d in found if d}


def _amounts(text: str) -> set[str]:
    out = set()
    for r in _AMOUNT_RES:
        for m in r.finditer(text):
            out.add(f"{float(m.group(1).replace(',', '')):.2f}")
    return out


def _order_ids(text: str) -> set[str]:
    return {m.group(1).upper().strip("-") for r in _ORDER_RES for m in r.finditer(text)}


def _products(text: str) -> set[str]:
    out = set()
    for m in _PRODUCT_RE.finditer(text):
        words = m.group(1).split()
        while words and words[0].lower() in _NOT_BRAND:  # "Your Running Shoes" has no brand
            words = words[1:]
        if len(words) > len(_item_of(m.group(1)).split()):
            out.add(" ".join(words).lower())
    return out


def _item_of(product: str) -> str:
    return next(i for i in PRODUCT_ITEMS if product.endswith(i))


def find_specifics(text: str) -> dict[str, set[str]]:
    """Normalised order ids, amounts, dates and catalog products stated in ``text``."""
    return {"order_id": _order_ids(text), "amount": _amounts(text), "date": _dates(text), "product": _products(text)}


def invented_specifics(reply: str, message: str) -> list[str]:
    """What ``reply`` states (order id, amount, date, product) that ``message`` does not."""
    said, given = find_specifics(reply), find_specifics(message)
    given_text = message.lower()
    out = []
    for kind in ("order_id", "amount", "date", "product"):
        for value in sorted(said[kind] - given[kind]):
            # A product the detector did not parse in the message ("coastal running shoes" in
            # lower case) still counts as given when its words are there.
            if kind == "product" and value in given_text:
                continue
            # Likewise an id the message writes without "#" or "order" ("is 2024-118830 shipped?").
            if kind == "order_id" and re.search(rf"(?<![\w-]){re.escape(value)}(?![\w-])", message, re.I):
                continue
            out.append(f"{kind}:{value}")
    return out


def message_specifics(row: Mapping) -> tuple[list[str], str]:
    """(the values a reply to ``row`` should restate, "slots" | "detected")."""
    slots = row.get("slots")
    if isinstance(slots, Mapping):
        return [str(slots[s]) for s in SPECIFIC_SLOTS if slots.get(s)], "slots"
    found = find_specifics(row["context"])
    values = sorted(found["order_id"])
    values += [m.group(0) for r in _AMOUNT_RES for m in r.finditer(row["context"])]
    values += [m.group(0) for r in _DATE_RES for m in r.finditer(row["context"])]
    values += sorted(found["product"])
    return list(dict.fromkeys(values)), "detected"


# ---------------------------------------------------------------------------- loops
_LOOP_WORD_RE = re.compile(r"[a-z0-9#$'-]+")
_STUTTER_RE = re.compile(r"([a-z]{2,8})\1\1", re.I)  # a letter run said three times inside a word
_LOOP_MAX_N = 12


def _repeats_back_to_back(words: Sequence[str], n: int) -> int:
    """The most times an ``n``-word sequence occurs back to back in ``words``: ``k`` copies from
    position p are exactly a run of ``(k - 1) * n`` positions i with words[i] == words[i + n]."""
    longest = run = 0
    for a, b in zip(words, words[n:], strict=False):
        run = run + 1 if a == b else 0
        longest = max(longest, run)
    return longest // n + 1


def loops(text: str) -> bool:
    """True if ``text`` holds a generation loop: an n-gram repeated back to back three times
    ("the the the", "and you and you and you"), a phrase of four or more words twice in a row, or
    a piece of a word stuttered ("Thornburftwoodftwoodftwood")."""
    words = _LOOP_WORD_RE.findall(text.lower())
    for n in range(1, min(_LOOP_MAX_N, len(words) // 2) + 1):
        if _repeats_back_to_back(words, n) >= (2 if n >= 4 else 3):
            return True
    return any(_STUTTER_RE.search(w) for w in re.findall(r"[A-Za-z]+", text))


# ---------------------------------------------------------------------------- one reply
def _has_rubric_inputs(row: Mapping) -> bool:
    return row.get("intent") in INTENTS and isinstance(row.get("slots"), Mapping)


def judge_reply(reply: str, row: Mapping) -> dict:
    """Everything the job metrics need to know about one reply to one message.

    Keys: ``specifics`` (what the message states), ``specifics_hit`` (those the reply restates),
    ``invented`` (order ids/amounts/dates/products the message does not state), ``loops``,
    ``intent_ok``, ``rating`` and ``rules`` (the rubric; None without the row's intent and slots).
    """
    specifics, _ = message_specifics(row)
    judged = {
        "specifics": specifics,
        "specifics_hit": [v for v in specifics if mentions(reply, v)],
        "invented": invented_specifics(reply, row["context"]),
        "loops": loops(reply),
        "intent_ok": None,
        "rating": None,
        "rules": None,
    }
    if _has_rubric_inputs(row):
        rating, rules = rate_response({"response": reply, "intent": row["intent"], "slots": row["slots"]})
        judged.update(intent_ok="off_intent" not in rules, rating=rating, rules=rules)
    return judged


# ----------------------------------------------------------------------- a set of replies
def _per_row(judged: Sequence[dict]) -> dict[str, np.ndarray | None]:
    """Per-row arrays: hits and totals of specifics, invented flag, intent, rating, pass."""
    arr = {
        "hits": np.array([len(j["specifics_hit"]) for j in judged], dtype=np.float64),
        "totals": np.array([len(j["specifics"]) for j in judged], dtype=np.float64),
        "invented": np.array([bool(j["invented"]) for j in judged], dtype=np.float64),
        "loops": np.array([bool(j.get("loops")) for j in judged], dtype=np.float64),
    }
    rated = all(j["rating"] is not None for j in judged)
    arr["intent"] = np.array([j["intent_ok"] for j in judged], dtype=np.float64) if rated else None
    arr["rating"] = np.array([j["rating"] for j in judged], dtype=np.float64) if rated else None
    arr["pass"] = (arr["rating"] >= HIGH_QUALITY_THRESHOLD).astype(np.float64) if rated else None
    return arr


def _rate(num: np.ndarray | None, den: np.ndarray | None, n_boot: int, seed: int) -> dict | None:
    """{"value", "ci"} of sum(num)/sum(den) (or the mean), or None when it cannot be computed."""
    if num is None or (den is not None and den.sum() == 0):
        return None
    value = float(num.sum() / den.sum()) if den is not None else float(num.mean())
    return {"value": value, "ci": list(metrics.bootstrap_ratio_ci(num, den, n_boot, seed))}


def job_metrics(
    rows: Sequence[Mapping],
    replies: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    judged: Sequence[dict] | None = None,
) -> dict:
    """Job metrics of ``replies`` to ``rows`` (each with "context", optionally "slots"/"intent").

    Rates are ``{"value", "ci"}`` or None when the data cannot support them.
    """
    if len(rows) != len(replies) or not rows:
        raise ValueError(f"got {len(rows)} rows and {len(replies)} replies; need equal, non-zero counts")
    judged = judged if judged is not None else [judge_reply(r, row) for r, row in zip(replies, rows, strict=False)]
    a = _per_row(judged)
    bases = {message_specifics(row)[1] for row in rows}
    rules = Counter(rule for j in judged for rule in (j["rules"] or ()))
    return {
        "n": len(rows),
        "specifics_recall": _rate(a["hits"], a["totals"], n_boot, seed),
        "specifics_in_messages": int(a["totals"].sum()),
        "specifics_restated": int(a["hits"].sum()),
        "specifics_basis": "slots" if bases == {"slots"} else "detected" if bases == {"detected"} else "mixed",
        "invented_share": _rate(a["invented"], None, n_boot, seed),
        "invented_count": int(a["invented"].sum()),
        "invented_order_id_count": sum(any(v.startswith("order_id:") for v in j["invented"]) for j in judged),
        "loop_share": _rate(a["loops"], None, n_boot, seed),
        "intent_accuracy": _rate(a["intent"], None, n_boot, seed),
        "rubric_mean": _rate(a["rating"], None, n_boot, seed),
        "rubric_pass": _rate(a["pass"], None, n_boot, seed),
        "rubric_failed_rules": {r: rules[r] for r in RUBRIC_RULES} if a["rating"] is not None else None,
    }


def paired_job_diff(
    rows: Sequence[Mapping], judged_a: Sequence[dict], judged_b: Sequence[dict], n_boot: int = 1000, seed: int = 0
) -> dict:
    """B minus A on the same rows for every job metric, with paired bootstrap 95% CIs (None
    where a metric is absent)."""
    a, b = _per_row(judged_a), _per_row(judged_b)
    out: dict[str, dict | None] = {}
    for key, col, den in (
        ("specifics_recall", "hits", a["totals"]),
        ("invented_share", "invented", None),
        ("loop_share", "loops", None),
        ("intent_accuracy", "intent", None),
        ("rubric_mean", "rating", None),
        ("rubric_pass", "pass", None),
    ):
        if a[col] is None or b[col] is None or (den is not None and den.sum() == 0):
            out[key] = None
        else:
            out[key] = metrics.paired_bootstrap_values(a[col], b[col], den, n_boot=n_boot, seed=seed)
    return out


def shuffled_control(rows: Sequence[Mapping], replies: Sequence[str], n_boot: int = 1000, seed: int = 0) -> dict:
    """The job metrics of each reply judged against the NEXT row's message (a derangement).

    Replies that ignore the message score the same here as on their own rows; replies that read
    it score far lower. The gap is what the metrics see of reading the message.
    """
    if len(rows) < 2:
        return job_metrics(rows, replies, n_boot, seed)
    shifted = list(rows[1:]) + [rows[0]]
    return job_metrics(shifted, replies, n_boot, seed)


def headline(report: Mapping) -> dict[str, float | None]:
    """The JOB_KEYS values of a :func:`job_metrics` report as plain floats (None when absent)."""
    return {k: (report[k]["value"] if report.get(k) else None) for k in JOB_KEYS}
