"""Personal data found in a frame: by what its values look like and by what its columns are called.

:func:`detect_personal_columns` reads a bounded sample of the distinct values of every text
column (e-mail addresses, phone numbers, Luhn-valid card numbers, IP addresses) and the column
names (``email``, ``surname``, ``ssn``, ...). ``data.privacy`` (:mod:`mlsd.data.privacy`) uses it
so that a build refuses a personal column the design did not mention.

>>> frame = pd.DataFrame({"email": ["ann@example.com", "bob@example.org"], "age": [17, 40]})
>>> [(d.column, d.kind, d.by) for d in detect_personal_columns(frame)]
[('email', 'email', 'values')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["MIN_SHARE", "SAMPLE_VALUES", "Detection", "detect_personal_columns", "luhn_valid"]

SAMPLE_VALUES = 1000
"""Distinct values per column that detection reads: enough for a share, bounded in cost."""
MIN_SHARE = 0.5
"""Share of sampled distinct values that must match a kind for the column to be flagged."""

_EMAIL = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_HEX4 = r"[0-9A-Fa-f]{1,4}"
_IPV6 = (
    rf"(?:{_HEX4}:){{7}}{_HEX4}"  # full
    rf"|(?:{_HEX4}:){{1,6}}:(?:{_HEX4}(?::{_HEX4}){{0,5}})?|::(?:{_HEX4}(?::{_HEX4}){{0,6}})?"  # with ::
)
# a phone number is written with a leading + or with separators between groups of digits; a bare
# run of digits is as likely an id, so it is not a phone here (a card, if it passes Luhn)
_PHONE = r"\+?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\(?\d{2,4}\)?){1,5}|\+\d{8,15}"
_CARD = r"[1-9]\d{12,18}|[1-9]\d{3}(?:[ -]\d{3,6}){2,4}"

# column names that say what the column holds (compared after lower-casing and squashing _ - space)
_NAMES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "email_address"),
    "phone": ("phone", "phonenumber", "telephone", "mobile", "cellphone", "tel", "fax"),
    "name": (
        "name",
        "firstname",
        "lastname",
        "surname",
        "fullname",
        "givenname",
        "familyname",
        "forename",
        "middlename",
        "maidenname",
        "username",
    ),
    "national_id": (
        "ssn",
        "socialsecuritynumber",
        "nationalid",
        "nino",
        "passport",
        "passportnumber",
        "taxid",
    ),
    "birth_date": ("dob", "dateofbirth", "birthdate", "birthday"),
    "address": ("address", "streetaddress", "street", "homeaddress"),
    "card": ("creditcard", "cardnumber", "ccnumber", "iban", "pan"),
    "ip_address": ("ip", "ipaddress", "ipv4", "ipv6"),
}
_NAME_KIND = {n: kind for kind, names in _NAMES.items() for n in names}
# a name token that says "personal" wherever it appears (customer_email, home_phone, user_surname)
_NAME_TOKENS = {"email": "email", "phone": "phone", "surname": "name", "ssn": "national_id"}


@dataclass(frozen=True)
class Detection:
    """A column that looks personal: the kind, and what showed it (its values or its name)."""

    column: str
    kind: str  # email | phone | card | ip_address | name | national_id | birth_date | address
    by: str  # "values" or "name"
    share: float | None = None  # values: share of the sampled distinct values that matched
    sampled: int | None = None  # values: how many distinct values were read

    def describe(self) -> str:
        """One line for an error message or the document (never a value)."""
        what = self.kind.replace("_", " ")
        if self.by == "name":
            return f"its name says {what}"
        return f"{what} in {self.share:.0%} of {self.sampled} sampled distinct values"


def luhn_valid(digits: pd.Series) -> np.ndarray:
    """Whether each string of 13 to 19 digits passes the Luhn check, vectorised over the strings.

    >>> luhn_valid(pd.Series(["4539578763621486", "4539578763621487", "79927398713", "12x"])).tolist()
    [True, False, False, False]
    """
    text = digits.astype(str)
    ok = text.str.fullmatch(r"\d{13,19}").fillna(False).to_numpy(dtype=bool)
    out = np.zeros(len(text), dtype=bool)
    if not ok.any():
        return out
    # left-padded with zeros to 19 digits: leading zeros add nothing, and the parity from the right holds
    padded = "".join(text[ok].str.zfill(19).tolist()).encode("ascii")
    d = (np.frombuffer(padded, dtype=np.uint8).reshape(-1, 19) - 48).astype(np.int64)
    doubled = np.arange(19) % 2 == 1  # the rightmost digit (index 18) is not doubled, the next one is
    d[:, doubled] *= 2
    d[d > 9] -= 9
    out[ok] = d.sum(axis=1) % 10 == 0
    return out


def _name_kind(column: str) -> str | None:
    norm = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")
    squashed = norm.replace("_", "")
    if squashed in _NAME_KIND:
        return _NAME_KIND[squashed]
    for token in norm.split("_"):
        if token in _NAME_TOKENS:
            return _NAME_TOKENS[token]
    # first_name, customer_last_name, ip_address: a known name at the end of the column name
    tokens = norm.split("_")
    for i in range(1, len(tokens)):
        tail = "".join(tokens[i:])
        if (tail in _NAME_KIND and _NAME_KIND[tail] != "name") or tail in (
            "firstname",
            "lastname",
            "fullname",
        ):
            return _NAME_KIND[tail]
    return None


def _value_kinds(values: pd.Series) -> dict[str, float]:
    """Share of ``values`` (distinct, non-null strings) matching each kind."""
    text = values.astype(str).str.strip()
    n = len(text)
    shares: dict[str, float] = {}
    ip = text.str.fullmatch(_IPV4).to_numpy(dtype=bool) | text.str.fullmatch(_IPV6).to_numpy(dtype=bool)
    shares["ip_address"] = ip.sum() / n
    shares["email"] = text.str.fullmatch(_EMAIL).to_numpy(dtype=bool).sum() / n
    card_like = text.str.fullmatch(_CARD).to_numpy(dtype=bool)
    card = np.zeros(n, dtype=bool)
    if card_like.any():
        card[card_like] = luhn_valid(text[card_like].str.replace(r"[ -]", "", regex=True))
    shares["card"] = card.sum() / n
    phone = text.str.fullmatch(_PHONE).to_numpy(dtype=bool) & ~ip & ~card
    digits = text.str.count(r"\d").to_numpy()
    phone &= (digits >= 7) & (digits <= 15)
    # dates and times (2013-01-01, 12.05.2013) have the shape of grouped digits but are not phones
    phone &= ~text.str.fullmatch(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}").to_numpy(
        dtype=bool
    )
    shares["phone"] = phone.sum() / n
    return shares


def detect_personal_columns(
    frame: pd.DataFrame,
    *,
    sample: int = SAMPLE_VALUES,
    min_share: float = MIN_SHARE,
    seed: int = 0,
    columns: list[str] | None = None,
) -> list[Detection]:
    """Columns of ``frame`` that look personal, by their values or by their name, in column order.

    Values: text columns (and integer columns of 13 to 19 digits, for card numbers) are read on
    at most ``sample`` distinct values, drawn with ``seed``; a kind matching at least
    ``min_share`` of them flags the column. Names: a column called like ``email``,
    ``first_name``, ``surname``, ``phone`` or ``ssn`` is flagged whatever it holds.

    >>> df = pd.DataFrame({"contact": ["+44 20 7946 0958", "(212) 555-0100"], "n": ["1234567", "89"]})
    >>> [d.describe() for d in detect_personal_columns(df)]
    ['phone in 100% of 2 sampled distinct values']
    """
    found: list[Detection] = []
    for column in columns if columns is not None else list(frame.columns):
        series = frame[column]
        kind_by_name = _name_kind(str(column))
        text: pd.Series | None = None
        if pd.api.types.is_integer_dtype(series.dtype):
            big = series.dropna()
            big = big[(big.abs() >= 10**12) & (big.abs() < 10**19)]
            if len(big):
                text = pd.Series(big.unique()).astype("int64").astype(str)
        elif pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype):
            distinct = pd.Series(series.dropna().unique())
            if len(distinct) > sample:  # drawn before the type filter: the cost stays bounded
                distinct = distinct.sample(sample, random_state=seed)
            text = distinct[distinct.map(type).isin([str])] if len(distinct) else distinct
        if text is not None and len(text):
            if len(text) > sample:
                text = text.sample(sample, random_state=seed)
            shares = _value_kinds(text.reset_index(drop=True))
            kind, share = max(shares.items(), key=lambda kv: kv[1])
            if share >= min_share:
                found.append(Detection(str(column), kind, "values", float(share), len(text)))
                continue
        if kind_by_name is not None:
            found.append(Detection(str(column), kind_by_name, "name"))
    return found
