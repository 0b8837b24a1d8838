"""Seeded card-payment simulator for the fraud use case.

`simulate_fraud` writes three files into a folder:

* ``payments.<ext>``: one `features.fraud.schemas.Payment` per row (without the ``type`` tag),
  sorted by ``ts``;
* ``labels.<ext>``: one `features.fraud.schemas.FraudLabel` per payment, sorted by ``known_at``.
  Fraud becomes known after a chargeback delay (hard: lognormal, median 10 days, clipped to 2-45
  days; easy: median 7 days, 1-60 days), a genuine payment at the end of its 14-day dispute window;
* ``merchants.csv``: ``merchant_id,category,lat,lon``.

The world: customers live in about 30 European cities, each with a spending level, an activity
rate, one or two cards, one or two devices, a name and an email address. They shop mostly at a few
favourite merchants of their home city, sometimes travel for a few days, and buy online. Amounts
depend on the merchant category and the customer; times follow daily and weekly rhythms of the
category in local time. Merchants charge in their own currency (EUR for most of them).

``device_id`` names the device that captured the payment: the merchant's terminal for card-present
payments (pos, contactless, atm) and the customer's phone or computer for online payments. ``ip`` is
the address of that device.

About 0.9 % of the payments are fraud, from four patterns. Fraud payments carry the victim's
customer_id and card_number:

1. card testing: a stolen card gets a burst of 5-20 tiny online payments within minutes at digital
   goods or marketplace merchants from a bot, then one or two large ones;
2. compromised terminal: for a few days, a large share of a merchant's payments are cloned cards
   run through one of its terminals;
3. stolen card far from home: card-present payments at electronics or jewelry shops hundreds or
   thousands of km away, shortly after a genuine payment at home;
4. account takeover: online payments from a new device and IP address, for several times the
   customer's usual amount, sometimes with a changed email address or name.

``difficulty="hard"`` (the default) makes these patterns realistic, so models must combine
history, delayed merchant labels and context (the shares of the frauds in brackets, `KNOBS`):

1. card testing (15 %): the large payments after the test are moderate (median 180 EUR) and only
   30 % of the bots use datacenter addresses;
2. compromised terminal (35 %): only 8-25 % of the merchant's traffic, at the category's usual
   amounts, on cards of customers of that city: it shows once the merchant's labels arrive;
3. far from home (20 %): at about the category's usual amount, in everyday shops too;
4. account takeover (30 %): 0.4-2x the customer's mean amount, half from the customer's own
   device, between the card's genuine payments (only part of its spending is fraud).

Genuine look-alikes in hard: trips (as in easy), 5 % of genuine online payments from a new
device, 1 % of genuine payments big one-off purchases (about 4x, at electronics, jewelry, travel,
marketplace and fashion merchants). ``difficulty="easy"`` keeps the plain signatures listed above
(shares 35/17/25/23 %).

References are free text; about 7 % of them contain personal data (email addresses, card numbers,
IBANs, IPv4 addresses, names).

The same seed and arguments give byte-identical files.
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from faker import Faker

__all__ = ["FraudSimulation", "simulate_fraud"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MINUTE_MS = 60_000
DISPUTE_WINDOW_MS = 14 * DAY_MS
MIN_PAYMENTS = 1_000
MIN_DAYS = 7


@dataclass(frozen=True)
class FraudSimulation:
    """Where a simulation was written, and how much fraud it holds."""

    payments: Path
    labels: Path
    merchants: Path
    n_payments: int
    n_fraud: int


# ----------------------------------------------------------------------------- the world


class _City(NamedTuple):
    name: str
    country: str
    lat: float
    lon: float
    currency: str
    locale: str
    utc_offset: int
    weight: float


# The first cities are large and far apart: small simulations use only the first few.
CITIES: tuple[_City, ...] = (
    _City("Paris", "FR", 48.8566, 2.3522, "EUR", "fr_FR", 1, 11.0),
    _City("Berlin", "DE", 52.5200, 13.4050, "EUR", "de_DE", 1, 9.0),
    _City("Madrid", "ES", 40.4168, -3.7038, "EUR", "es_ES", 1, 8.0),
    _City("London", "GB", 51.5074, -0.1278, "GBP", "en_GB", 0, 7.0),
    _City("Rome", "IT", 41.9028, 12.4964, "EUR", "it_IT", 1, 6.0),
    _City("Stockholm", "SE", 59.3293, 18.0686, "SEK", "sv_SE", 1, 4.0),
    _City("Amsterdam", "NL", 52.3676, 4.9041, "EUR", "nl_NL", 1, 5.0),
    _City("Vienna", "AT", 48.2082, 16.3738, "EUR", "de_AT", 1, 4.0),
    _City("Lisbon", "PT", 38.7223, -9.1393, "EUR", "pt_PT", 0, 3.0),
    _City("Hamburg", "DE", 53.5511, 9.9937, "EUR", "de_DE", 1, 4.0),
    _City("Milan", "IT", 45.4642, 9.1900, "EUR", "it_IT", 1, 5.0),
    _City("Barcelona", "ES", 41.3874, 2.1686, "EUR", "es_ES", 1, 5.0),
    _City("Copenhagen", "DK", 55.6761, 12.5683, "DKK", "da_DK", 1, 3.0),
    _City("Munich", "DE", 48.1351, 11.5820, "EUR", "de_DE", 1, 4.0),
    _City("Brussels", "BE", 50.8503, 4.3517, "EUR", "fr_BE", 1, 3.0),
    _City("Helsinki", "FI", 60.1699, 24.9384, "EUR", "fi_FI", 2, 2.5),
    _City("Dublin", "IE", 53.3498, -6.2603, "EUR", "en_IE", 0, 2.5),
    _City("Lyon", "FR", 45.7640, 4.8357, "EUR", "fr_FR", 1, 3.0),
    _City("Oslo", "NO", 59.9139, 10.7522, "NOK", "no_NO", 1, 2.5),
    _City("Zurich", "CH", 47.3769, 8.5417, "CHF", "de_CH", 1, 2.0),
    _City("Frankfurt", "DE", 50.1109, 8.6821, "EUR", "de_DE", 1, 3.0),
    _City("Marseille", "FR", 43.2965, 5.3698, "EUR", "fr_FR", 1, 3.0),
    _City("Manchester", "GB", 53.4808, -2.2426, "GBP", "en_GB", 0, 2.5),
    _City("Cologne", "DE", 50.9375, 6.9603, "EUR", "de_DE", 1, 3.0),
    _City("Rotterdam", "NL", 51.9244, 4.4777, "EUR", "nl_NL", 1, 2.0),
    _City("Porto", "PT", 41.1579, -8.6291, "EUR", "pt_PT", 0, 2.0),
    _City("Gothenburg", "SE", 57.7089, 11.9746, "SEK", "sv_SE", 1, 1.5),
    _City("Antwerp", "BE", 51.2194, 4.4025, "EUR", "nl_BE", 1, 1.5),
    _City("Tallinn", "EE", 59.4370, 24.7536, "EUR", "et_EE", 2, 1.0),
    _City("Ljubljana", "SI", 46.0569, 14.5058, "EUR", "sl_SI", 1, 1.0),
)
N_CITIES = len(CITIES)
CITY_LAT = np.array([c.lat for c in CITIES])
CITY_LON = np.array([c.lon for c in CITIES])
CITY_OFFSET = np.array([c.utc_offset for c in CITIES], dtype=np.int64)
CITY_WEIGHT = np.array([c.weight for c in CITIES])

CURRENCIES = ("EUR", "GBP", "SEK", "DKK", "NOK", "CHF", "USD")
EUR_RATE = np.array([1.0, 0.84, 11.2, 7.46, 11.6, 0.93, 1.09])  # units of currency per EUR
NOTE_UNIT = np.array([1, 1, 10, 10, 10, 1, 1])  # ATM notes scale (kronor are 10x)
CITY_CURRENCY = np.array([CURRENCIES.index(c.currency) for c in CITIES])
ONLINE_CURRENCY_P = np.array([0.72, 0.07, 0.03, 0.02, 0.02, 0.02, 0.12])

CHANNELS = ("pos", "contactless", "online", "atm")
POS, CONTACTLESS, ONLINE, ATM = range(4)

# local-hour profiles (0..23) and weekday profiles (Mon..Sun)
_DAYTIME = (0.05, 0.02, 0.01, 0.01, 0.01, 0.05, 0.3, 0.9, 1.4, 1.6, 1.8, 2.0,
            2.1, 1.8, 1.6, 1.8, 2.3, 2.8, 2.9, 2.3, 1.5, 0.8, 0.3, 0.1)  # fmt: skip
_SHOPS = (0, 0, 0, 0, 0, 0, 0, 0.2, 0.6, 1.0, 1.6, 2.0,
          2.2, 2.0, 1.8, 1.9, 2.2, 2.6, 2.6, 2.0, 1.2, 0.5, 0.1, 0)  # fmt: skip
_MEALS = (0.3, 0.15, 0.05, 0, 0, 0, 0.05, 0.4, 0.8, 0.6, 0.5, 1.4,
          3.2, 3.0, 1.2, 0.5, 0.5, 0.8, 1.8, 3.0, 3.2, 2.2, 1.2, 0.6)  # fmt: skip
_COMMUTE = (0.1, 0.05, 0.02, 0.02, 0.1, 0.5, 1.6, 3.0, 2.6, 1.4, 1.0, 1.0,
            1.1, 1.0, 1.0, 1.4, 2.2, 2.8, 2.4, 1.5, 0.9, 0.6, 0.4, 0.2)  # fmt: skip
_EVENING = (0.8, 0.4, 0.2, 0.05, 0, 0, 0, 0, 0.05, 0.1, 0.2, 0.4,
            0.6, 0.6, 0.6, 0.7, 0.9, 1.2, 2.0, 2.8, 3.0, 2.6, 2.0, 1.4)  # fmt: skip
_ONLINE = (0.5, 0.3, 0.2, 0.15, 0.1, 0.15, 0.4, 0.8, 1.0, 1.1, 1.2, 1.3,
           1.4, 1.3, 1.2, 1.2, 1.3, 1.5, 1.8, 2.3, 2.6, 2.5, 1.8, 1.0)  # fmt: skip
_CASH = (0.2, 0.1, 0.05, 0.02, 0.02, 0.05, 0.3, 0.8, 1.2, 1.4, 1.5, 1.7,
         2.0, 1.8, 1.5, 1.5, 1.8, 2.2, 2.3, 1.9, 1.4, 1.0, 0.6, 0.4)  # fmt: skip
_W_GROCERY = (1.0, 0.95, 1.0, 1.05, 1.3, 1.45, 0.35)
_W_MEALS = (0.75, 0.8, 0.9, 1.0, 1.35, 1.45, 1.0)
_W_COMMUTE = (1.15, 1.15, 1.15, 1.15, 1.1, 0.75, 0.55)
_W_SHOPS = (0.85, 0.85, 0.9, 1.0, 1.2, 1.7, 0.35)
_W_LEISURE = (0.55, 0.6, 0.7, 0.9, 1.45, 1.7, 1.1)
_W_ONLINE = (1.05, 1.0, 1.0, 0.95, 0.85, 0.9, 1.25)
_W_CASH = (1.0, 0.95, 0.95, 1.0, 1.35, 1.15, 0.6)


class _Category(NamedTuple):
    name: str
    online: bool
    pay_weight: float  # share of payments
    merchant_weight: float  # share of merchants (among physical or among online ones)
    median_eur: float
    sigma: float
    hours: tuple[float, ...]
    week: tuple[float, ...]


CATEGORIES: tuple[_Category, ...] = (
    _Category("grocery", False, 0.28, 0.18, 27.0, 0.75, _DAYTIME, _W_GROCERY),
    _Category("restaurant", False, 0.15, 0.24, 30.0, 0.6, _MEALS, _W_MEALS),
    _Category("fuel", False, 0.07, 0.06, 58.0, 0.3, _COMMUTE, _W_COMMUTE),
    _Category("transport", False, 0.06, 0.03, 3.8, 0.5, _COMMUTE, _W_COMMUTE),
    _Category("pharmacy", False, 0.04, 0.06, 17.0, 0.7, _DAYTIME, _W_SHOPS),
    _Category("fashion", False, 0.05, 0.12, 55.0, 0.75, _SHOPS, _W_SHOPS),
    _Category("electronics", False, 0.02, 0.05, 140.0, 1.0, _SHOPS, _W_SHOPS),
    _Category("jewelry", False, 0.004, 0.03, 220.0, 0.9, _SHOPS, _W_SHOPS),
    _Category("entertainment", False, 0.04, 0.07, 24.0, 0.6, _EVENING, _W_LEISURE),
    _Category("atm_operator", False, 0.045, 0.04, 100.0, 0.0, _CASH, _W_CASH),
    _Category("online_marketplace", True, 0.12, 0.45, 38.0, 0.95, _ONLINE, _W_ONLINE),
    _Category("digital_goods", True, 0.07, 0.35, 9.0, 0.8, _ONLINE, _W_ONLINE),
    _Category("travel", True, 0.025, 0.20, 160.0, 0.9, _ONLINE, _W_ONLINE),
)
N_CATS = len(CATEGORIES)
CAT = {c.name: i for i, c in enumerate(CATEGORIES)}
CAT_ONLINE = np.array([c.online for c in CATEGORIES])
CAT_MEDIAN = np.array([c.median_eur for c in CATEGORIES])
CAT_SIGMA = np.array([c.sigma for c in CATEGORIES])
PHYSICAL_CATS = np.flatnonzero(~CAT_ONLINE)
ONLINE_CATS = np.flatnonzero(CAT_ONLINE)

ATM_NOTES = np.array([20, 40, 50, 100, 150, 200, 300])
ATM_NOTES_P = np.array([0.12, 0.1, 0.2, 0.27, 0.08, 0.15, 0.08])
SUBSCRIPTIONS_EUR = np.array([4.99, 7.99, 9.99, 11.99, 12.99, 14.99, 17.99])

RESIDENTIAL_OCTETS = np.array([31, 37, 46, 62, *range(77, 96), 109, 145, 151, 176, 178, 188, 193, 194])
DATACENTER_OCTETS = np.array([5, 23, 45, 51, 64, 104, 107, 138, 139, 142, 159, 165, 167, 185, 198])

FREE_MAIL = (
    "gmail.com",
    "outlook.com",
    "proton.me",
    "mail.com",
    "yandex.com",
    "gmx.com",
    "tutanota.com",
)
FAKER_LOCALES = tuple(dict.fromkeys(c.locale for c in CITIES))

# IBAN layouts after the check digits: a = upper-case letter, n = digit
IBAN_LAYOUT = {
    "AT": "16n",
    "BE": "12n",
    "CH": "17n",
    "DE": "18n",
    "DK": "14n",
    "EE": "16n",
    "ES": "20n",
    "FI": "14n",
    "FR": "23n",
    "GB": "4a14n",
    "IE": "4a14n",
    "IT": "1a22n",
    "NL": "4a10n",
    "NO": "11n",
    "PT": "21n",
    "SE": "20n",
    "SI": "15n",
}
BANK_CODES = {
    "GB": ("NWBK", "BARC", "LOYD", "HBUK", "MIDL", "MONZ"),
    "IE": ("AIBK", "BOFI", "IPBS", "ULSB"),
    "NL": ("ABNA", "INGB", "RABO", "TRIO", "SNSB", "KNAB"),
}


def _haversine_km(lat1, lon1, lat2, lon2):
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(x, dtype=float)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 6371.0 * 2 * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


CITY_DISTANCE_KM = _haversine_km(CITY_LAT[:, None], CITY_LON[:, None], CITY_LAT[None, :], CITY_LON[None, :])

# ----------------------------------------------------------------------------- small generators


def _luhn_check_digits(digits: np.ndarray) -> np.ndarray:
    """Check digit for each row of payload digits (the check digit goes to the right)."""
    width = digits.shape[1]
    doubled = digits[:, (width - 1) % 2 :: 2] * 2  # every second digit from the right
    doubled = np.where(doubled > 9, doubled - 9, doubled)
    plain = digits[:, width % 2 :: 2]
    return (10 - (doubled.sum(axis=1) + plain.sum(axis=1)) % 10) % 10


def _card_numbers(rng: np.random.Generator, n: int, bins: np.ndarray) -> list[str]:
    """`n` Luhn-valid 16-digit card numbers on the given 6-digit BINs."""
    bin_digits = (bins[:, None] // 10 ** np.arange(5, -1, -1)) % 10
    payload = np.concatenate([bin_digits[rng.integers(0, len(bins), n)], rng.integers(0, 10, (n, 9))], axis=1)
    full = np.concatenate([payload, _luhn_check_digits(payload)[:, None]], axis=1)
    return np.ascontiguousarray((full + 48).astype(np.uint8)).view("S16").ravel().astype("U16").tolist()


def _ipv4(rng: np.random.Generator, n: int, *, datacenter: bool = False) -> list[str]:
    first = rng.choice(DATACENTER_OCTETS if datacenter else RESIDENTIAL_OCTETS, n).tolist()
    middle = rng.integers(0, 256, (n, 2)).tolist()
    last = rng.integers(1, 255, n).tolist()
    return [f"{a}.{b}.{c}.{d}" for a, (b, c), d in zip(first, middle, last, strict=True)]


def _hex_ids(rng: np.random.Generator, n: int, prefix: str) -> list[str]:
    return [f"{prefix}{x:012x}" for x in rng.integers(0, 1 << 48, n).tolist()]


def _iban(rng: np.random.Generator, country: str) -> str:
    """An IBAN with a valid mod-97 checksum in the layout of `country`."""
    bban = []
    layout = IBAN_LAYOUT[country]
    count = ""
    for ch in layout:
        if ch.isdigit():
            count += ch
            continue
        k = int(count)
        count = ""
        if ch == "a" and k == 4 and country in BANK_CODES:
            codes = BANK_CODES[country]
            bban.append(codes[int(rng.integers(0, len(codes)))])
        elif ch == "a":
            bban.append("".join(chr(65 + x) for x in rng.integers(0, 26, k).tolist()))
        else:
            bban.append("".join(str(x) for x in rng.integers(0, 10, k).tolist()))
    body = "".join(bban)
    numeric = "".join(str(int(ch, 36)) for ch in body + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{body}"


_ASCII_FOLD = str.maketrans({"ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "Ae", "đ": "d", "ł": "l", "œ": "oe"})


def _mail_part(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD)).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _base36(x: int, width: int = 6) -> str:
    out = []
    for _ in range(width):
        x, r = divmod(x, 36)
        out.append("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r])
    return "".join(out)


class _Fakers:
    """One seeded Faker per locale; the same seed gives the same sequence of names."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._fakers: dict[str, Faker] = {}

    def __getitem__(self, locale: str) -> Faker:
        if locale not in self._fakers:
            fake = Faker(locale)
            fake.seed_instance(self._seed * 1_000_003 + zlib.crc32(locale.encode()))
            self._fakers[locale] = fake
        return self._fakers[locale]


class _Strings:
    """Append-only string table: columns hold indices into it until the files are written."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def add(self, values: Sequence[str]) -> np.ndarray:
        first = len(self.values)
        self.values.extend(values)
        return np.arange(first, len(self.values), dtype=np.int64)

    def add_one(self, value: str) -> int:
        self.values.append(value)
        return len(self.values) - 1


@dataclass
class _Tables:
    cards: _Strings
    devices: _Strings
    ips: _Strings
    names: _Strings
    emails: _Strings


@dataclass
class _World:
    # customers
    home: np.ndarray
    home_lat: np.ndarray
    home_lon: np.ndarray
    level: np.ndarray
    activity: np.ndarray
    name: np.ndarray
    email: np.ndarray
    card1: np.ndarray
    card2: np.ndarray  # -1 when the customer has one card
    dev1: np.ndarray
    dev2: np.ndarray  # -1 when the customer has one device
    dev_ip: np.ndarray  # usual ip of each customer device and terminal, by device index
    cat_cum: np.ndarray
    pref: np.ndarray
    trip_start: np.ndarray
    trip_end: np.ndarray
    trip_city: np.ndarray
    # merchants
    m_id: list[str]
    m_city: np.ndarray
    m_cat: np.ndarray
    m_lat: np.ndarray
    m_lon: np.ndarray
    m_currency: np.ndarray
    m_term0: np.ndarray
    m_nterm: np.ndarray
    m_key_sorted: np.ndarray
    m_by_key: np.ndarray
    customer_ids: list[str]

    @property
    def n_customers(self) -> int:
        return len(self.home)


def _email_for(fake: Faker, rng: np.random.Generator, first: str, last: str) -> str:
    f, la = _mail_part(first) or "user", _mail_part(last) or "mail"
    yy = int(rng.integers(50, 106)) % 100
    pattern = int(rng.integers(0, 10))
    if pattern >= 8:  # not derived from the name
        local = _mail_part(fake.user_name()) or f
        if rng.random() < 0.5:
            local += str(int(rng.integers(1, 999)))
    else:
        local = (
            f"{f}.{la}",
            f"{f}{la}",
            f"{f[0]}{la}",
            f"{f}_{la}",
            f"{f}.{la}{yy:02d}",
            f"{la}.{f}",
            f"{f}{yy:02d}",
            f"{f[0]}.{la}",
        )[pattern]
    return f"{local}@{fake.free_email_domain()}"


def _build_world(
    rng: np.random.Generator,
    fakers: _Fakers,
    n_customers: int,
    n_merchants: int,
    days: int,
    start_ms: int,
) -> tuple[_World, _Tables]:
    tables = _Tables(_Strings(), _Strings(), _Strings(), _Strings(), _Strings())

    # merchants: at least one of every physical category in every active city
    n_online = max(len(ONLINE_CATS), round(0.12 * n_merchants))
    n_physical = n_merchants - n_online
    n_active = int(np.clip(n_physical // len(PHYSICAL_CATS), 2, N_CITIES))
    active = np.arange(n_active)
    city_p = CITY_WEIGHT[active] / CITY_WEIGHT[active].sum()
    phys_w = np.array([CATEGORIES[k].merchant_weight for k in PHYSICAL_CATS])
    onl_w = np.array([CATEGORIES[k].merchant_weight for k in ONLINE_CATS])
    extra_phys = n_physical - n_active * len(PHYSICAL_CATS)
    extra_onl = n_online - len(ONLINE_CATS)
    m_city = np.concatenate(
        [
            np.repeat(active, len(PHYSICAL_CATS)),
            rng.choice(active, extra_phys, p=city_p),
            np.arange(len(ONLINE_CATS)) % n_active,
            rng.choice(active, extra_onl, p=city_p),
        ]
    )
    m_cat = np.concatenate(
        [
            np.tile(PHYSICAL_CATS, n_active),
            rng.choice(PHYSICAL_CATS, extra_phys, p=phys_w / phys_w.sum()),
            ONLINE_CATS,
            rng.choice(ONLINE_CATS, extra_onl, p=onl_w / onl_w.sum()),
        ]
    )
    m_currency = CITY_CURRENCY[m_city].copy()
    online_m = CAT_ONLINE[m_cat]
    onl_idx = np.flatnonzero(online_m)
    m_currency[onl_idx] = rng.choice(len(CURRENCIES), len(onl_idx), p=ONLINE_CURRENCY_P)
    m_currency[onl_idx[: len(ONLINE_CATS)]] = 0  # one EUR merchant of every online category
    order = rng.permutation(n_merchants)
    m_city, m_cat, m_currency, online_m = (
        m_city[order],
        m_cat[order],
        m_currency[order],
        online_m[order],
    )
    m_lat = np.round(CITY_LAT[m_city] + rng.normal(0, 0.035, n_merchants), 5)
    m_lon = np.round(CITY_LON[m_city] + rng.normal(0, 0.05, n_merchants), 5)
    width = max(5, len(str(n_merchants)))
    m_id = [f"M{i:0{width}d}" for i in range(1, n_merchants + 1)]
    m_key = np.where(online_m, N_CITIES, m_city) * N_CATS + m_cat
    m_by_key = np.argsort(m_key, kind="stable")
    m_key_sorted = m_key[m_by_key]

    # terminals of physical merchants are devices with a fixed ip
    m_nterm = np.where(online_m, 0, np.minimum(1 + rng.poisson(1.0, n_merchants), 5))
    m_nterm[m_cat == CAT["atm_operator"]] = 1 + rng.integers(0, 3, int((m_cat == CAT["atm_operator"]).sum()))
    m_term0 = np.concatenate([[0], np.cumsum(m_nterm)[:-1]])
    tables.devices.add([f"{m_id[m]}-T{j + 1}" for m in range(n_merchants) for j in range(m_nterm[m])])
    term_ip = tables.ips.add(_ipv4(rng, int(m_nterm.sum())))

    # customers
    home = rng.choice(active, n_customers, p=city_p)
    home_lat = np.round(CITY_LAT[home] + rng.normal(0, 0.04, n_customers), 5)
    home_lon = np.round(CITY_LON[home] + rng.normal(0, 0.06, n_customers), 5)
    level = rng.lognormal(0.0, 0.5, n_customers)
    activity = rng.lognormal(0.0, 0.8, n_customers)
    activity /= activity.sum()
    all_locale_p = np.array([sum(c.weight for c in CITIES if c.locale == lo) for lo in FAKER_LOCALES])
    migrant = rng.random(n_customers) < 0.15
    other_locale = rng.choice(len(FAKER_LOCALES), n_customers, p=all_locale_p / all_locale_p.sum())
    locale = [
        FAKER_LOCALES[int(o)] if m else CITIES[int(h)].locale
        for h, m, o in zip(home.tolist(), migrant.tolist(), other_locale.tolist(), strict=True)
    ]
    names, emails, seen = [], [], set()
    for lo in locale:
        fake = fakers[lo]
        first, last = fake.first_name(), fake.last_name()
        email = _email_for(fake, rng, first, last)
        while email in seen:
            local, domain = email.split("@")
            email = f"{local}{int(rng.integers(1, 100))}@{domain}"
        seen.add(email)
        names.append(f"{first} {last}")
        emails.append(email)
    name_idx = tables.names.add(names)
    email_idx = tables.emails.add(emails)
    width = max(6, len(str(n_customers)))
    customer_ids = [f"C{i:0{width}d}" for i in range(1, n_customers + 1)]

    # cards: banks' BINs, one or two cards per customer
    bins = np.concatenate(
        [
            400000 + rng.integers(0, 100000, 24),
            510000 + rng.integers(0, 50000, 16),
        ]
    )
    two_cards = rng.random(n_customers) < 0.3
    cards = tables.cards.add(_card_numbers(rng, n_customers + int(two_cards.sum()), bins))
    card1 = cards[:n_customers]
    card2 = np.full(n_customers, -1, dtype=np.int64)
    card2[two_cards] = cards[n_customers:]

    # devices: a phone, sometimes a computer too, each with a usual ip
    two_devs = rng.random(n_customers) < 0.45
    devs = tables.devices.add(_hex_ids(rng, n_customers + int(two_devs.sum()), "d"))
    dev_ips = tables.ips.add(_ipv4(rng, len(devs)))
    dev1 = devs[:n_customers]
    dev2 = np.full(n_customers, -1, dtype=np.int64)
    dev2[two_devs] = devs[n_customers:]
    dev_ip = np.concatenate([term_ip, dev_ips])

    # spending habits: category mix and favourite merchants
    pay_w = np.array([c.pay_weight for c in CATEGORIES])
    prop = pay_w * rng.gamma(2.0, 0.5, (n_customers, N_CATS))
    prop[:, CAT["fuel"]] *= rng.random(n_customers) < 0.6  # no car
    prop[:, CAT["transport"]] *= rng.random(n_customers) < 0.7
    cat_cum = np.cumsum(prop / prop.sum(axis=1, keepdims=True), axis=1)
    pref = rng.integers(0, 1 << 30, (n_customers, N_CATS))

    # trips of a few days to another active city
    n_trips = np.minimum(rng.poisson(0.6 * days / 90, n_customers), 3)
    trip_start = start_ms + rng.integers(0, days * DAY_MS, (n_customers, 3))
    trip_end = trip_start + rng.integers(2 * DAY_MS, 8 * DAY_MS, (n_customers, 3))
    none = np.arange(3)[None, :] >= n_trips[:, None]
    trip_end[none] = trip_start[none]
    dest_p = CITY_WEIGHT[active][None, :] * (active[None, :] != home[:, None])
    dest_cum = np.cumsum(dest_p / dest_p.sum(axis=1, keepdims=True), axis=1)
    u = rng.random((n_customers, 3))
    trip_city = np.minimum((u[:, :, None] > dest_cum[:, None, :]).sum(axis=2), n_active - 1)

    world = _World(
        home=home,
        home_lat=home_lat,
        home_lon=home_lon,
        level=level,
        activity=activity,
        name=name_idx,
        email=email_idx,
        card1=card1,
        card2=card2,
        dev1=dev1,
        dev2=dev2,
        dev_ip=dev_ip,
        cat_cum=cat_cum,
        pref=pref,
        trip_start=trip_start,
        trip_end=trip_end,
        trip_city=trip_city,
        m_id=m_id,
        m_city=m_city,
        m_cat=m_cat,
        m_lat=m_lat,
        m_lon=m_lon,
        m_currency=m_currency,
        m_term0=m_term0,
        m_nterm=m_nterm,
        m_key_sorted=m_key_sorted,
        m_by_key=m_by_key,
        customer_ids=customer_ids,
    )
    return world, tables


# ----------------------------------------------------------------------------- genuine payments

FIELDS: tuple[str, ...] = ("ts", "cust", "card", "merchant", "eur", "lat", "lon")
FIELDS += ("channel", "device", "ip", "name", "email")


def _day_weights(days: int, start_ms: int, week: tuple[float, ...]) -> np.ndarray:
    day0 = np.datetime64(start_ms, "ms").astype("datetime64[D]")
    dates = day0 + np.arange(days)
    dow = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    dom = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    w = np.asarray(week)[dow] * np.where((dom >= 25) & (dom <= 28), 1.12, 1.0)  # payday
    return w / w.sum()


def _local_times(
    rng: np.random.Generator, cat: int, n: int, offset: np.ndarray, start_ms: int, days: int
) -> np.ndarray:
    """Times of `n` payments of a category over the whole window, by local rhythms."""
    hours = np.asarray(CATEGORIES[cat].hours, dtype=float)
    d = rng.choice(days, n, p=_day_weights(days, start_ms, CATEGORIES[cat].week))
    h = rng.choice(24, n, p=hours / hours.sum())
    ts = start_ms + d * DAY_MS + (h - offset) * HOUR_MS + rng.integers(0, HOUR_MS, n)
    return start_ms + (ts - start_ms) % (days * DAY_MS)


def _pick_merchants(world: _World, rng: np.random.Generator, cust, cat, city) -> np.ndarray:
    key = np.where(CAT_ONLINE[cat], N_CITIES, city) * N_CATS + cat
    lo = np.searchsorted(world.m_key_sorted, key, "left")
    count = np.searchsorted(world.m_key_sorted, key, "right") - lo
    if (count == 0).any():
        raise AssertionError("a city lacks a merchant category")
    pick = (world.pref[cust, cat] + rng.geometric(0.45, len(cust)) - 1) % count
    return world.m_by_key[lo + pick]


def _genuine(
    world: _World, tables: _Tables, rng: np.random.Generator, n: int, days: int, start_ms: int
) -> dict[str, np.ndarray]:
    cust = rng.choice(world.n_customers, n, p=world.activity)
    cat = np.minimum((rng.random(n)[:, None] > world.cat_cum[cust]).sum(axis=1), N_CATS - 1)
    ts = np.empty(n, dtype=np.int64)
    offset = CITY_OFFSET[world.home[cust]]
    for k in range(N_CATS):
        rows = np.flatnonzero(cat == k)
        ts[rows] = _local_times(rng, k, len(rows), offset[rows], start_ms, days)

    city = world.home[cust].copy()
    for j in range(world.trip_start.shape[1]):
        away = (ts >= world.trip_start[cust, j]) & (ts < world.trip_end[cust, j])
        city[away] = world.trip_city[cust[away], j]
    at_home = city == world.home[cust]
    merchant = _pick_merchants(world, rng, cust, cat, city)

    eur = CAT_MEDIAN[cat] * world.level[cust] ** 0.7 * np.exp(rng.normal(0.0, 1.0, n) * CAT_SIGMA[cat])
    transport = cat == CAT["transport"]
    eur[transport] = np.clip(eur[transport], 1.2, 18.0)
    eur = np.clip(eur, 0.5, CAT_MEDIAN[cat] * 30)

    online = CAT_ONLINE[cat]
    atm = cat == CAT["atm_operator"]
    tap_p = np.where(eur < 50, 0.8, np.where(eur < 100, 0.25, 0.03))
    channel = np.where(rng.random(n) < tap_p, CONTACTLESS, POS)
    channel[transport] = CONTACTLESS
    channel[atm] = ATM
    channel[online] = ONLINE

    lat = world.m_lat[merchant].copy()
    lon = world.m_lon[merchant].copy()
    home_online = online & at_home
    lat[home_online] = world.home_lat[cust[home_online]]
    lon[home_online] = world.home_lon[cust[home_online]]
    away_online = online & ~at_home
    n_away = int(away_online.sum())
    lat[away_online] = np.round(CITY_LAT[city[away_online]] + rng.normal(0, 0.03, n_away), 5)
    lon[away_online] = np.round(CITY_LON[city[away_online]] + rng.normal(0, 0.045, n_away), 5)

    term = world.m_term0[merchant] + (rng.random(n) * np.maximum(world.m_nterm[merchant], 1)).astype(np.int64)
    second = (world.dev2[cust] >= 0) & (rng.random(n) < 0.4)
    own = np.where(second, world.dev2[cust], world.dev1[cust])
    device = np.where(online, own, term)
    ip = world.dev_ip[device]
    fresh = online & (rng.random(n) < np.where(at_home, 0.08, 0.5))
    ip[fresh] = tables.ips.add(_ipv4(rng, int(fresh.sum())))

    use2 = (world.card2[cust] >= 0) & (rng.random(n) < 0.25)
    card = np.where(use2, world.card2[cust], world.card1[cust])
    return {
        "ts": ts,
        "cust": cust,
        "card": card,
        "merchant": merchant,
        "eur": eur,
        "lat": lat,
        "lon": lon,
        "channel": channel,
        "device": device,
        "ip": ip,
        "name": world.name[cust],
        "email": world.email[cust],
        "at_home": at_home,
    }


def _localize(world: _World, rng: np.random.Generator, eur, merchant, genuine) -> tuple[np.ndarray, np.ndarray]:
    """Amounts in the merchant's currency, with shop-like prices for genuine payments."""
    currency = world.m_currency[merchant]
    rate = EUR_RATE[currency]
    amount = np.round(eur * rate, 2)
    cat = world.m_cat[merchant]
    n = len(eur)
    priced = genuine & np.isin(cat, [CAT["fashion"], CAT["electronics"], CAT["online_marketplace"]])
    priced &= (rng.random(n) < 0.35) & (amount >= 2)
    amount[priced] = np.floor(amount[priced]) + 0.99
    subs = genuine & (cat == CAT["digital_goods"]) & (rng.random(n) < 0.45)
    sub_price = SUBSCRIPTIONS_EUR[rng.integers(0, len(SUBSCRIPTIONS_EUR), n)]
    amount[subs] = np.where(rate[subs] > 5, np.round(sub_price[subs] * rate[subs]) - 0.01, sub_price[subs])
    atm = genuine & (cat == CAT["atm_operator"])
    notes = ATM_NOTES[np.minimum(rng.choice(len(ATM_NOTES), n, p=ATM_NOTES_P) + (eur > 160), len(ATM_NOTES) - 1)]
    amount[atm] = (notes * NOTE_UNIT[currency])[atm].astype(float)
    return np.maximum(np.round(amount, 2), 0.01), currency


# ----------------------------------------------------------------------------- fraud patterns

PATTERNS = ("genuine", "card_testing", "compromised_terminal", "far_from_home", "account_takeover")
FAR_KM = 400
Difficulty = Literal["hard", "easy"]


@dataclass(frozen=True)
class _Knobs:
    """What makes one difficulty: pattern shares, how far frauds stand out, genuine look-alikes, delays."""

    share: tuple[float, float, float, float]  # card testing, terminal, far from home, takeover
    testing_large_eur: float  # median of the large payments after a card test
    testing_datacenter_p: float  # share of card tests from a datacenter address
    terminal_share: tuple[float, float]  # fraud share of a compromised terminal's traffic
    terminal_amount: float  # multiple of the category median
    terminal_locals: bool  # victims live in the merchant's city
    far_amount: float  # multiple of the category median
    far_cats: tuple[str, ...]
    takeover_amount: tuple[float, float]  # multiple of the customer's mean amount
    takeover_own_device_p: float  # session hijack: the customer's own device
    genuine_new_device_p: float  # genuine online payments from a device never seen before
    genuine_big_p: float  # genuine one-off purchases several times the customer's usual amount
    fraud_delay_days: tuple[float, float, float, float]  # lognormal median, sigma, clip low, clip high


KNOBS: dict[str, _Knobs] = {
    "easy": _Knobs(
        share=(0.35, 0.17, 0.25, 0.23),
        testing_large_eur=550.0,
        testing_datacenter_p=1.0,
        terminal_share=(0.4, 0.75),
        terminal_amount=2.5,
        terminal_locals=False,
        far_amount=3.0,
        far_cats=("electronics", "jewelry"),
        takeover_amount=(3.0, 10.0),
        takeover_own_device_p=0.0,
        genuine_new_device_p=0.0,
        genuine_big_p=0.0,
        fraud_delay_days=(7.0, 0.7, 1.0, 60.0),
    ),
    "hard": _Knobs(
        share=(0.15, 0.35, 0.2, 0.3),
        testing_large_eur=180.0,
        testing_datacenter_p=0.3,
        terminal_share=(0.08, 0.25),
        terminal_amount=1.0,
        terminal_locals=True,
        far_amount=1.1,
        far_cats=("electronics", "jewelry", "fashion", "restaurant", "grocery", "fuel"),
        takeover_amount=(0.4, 2.0),
        takeover_own_device_p=0.5,
        genuine_new_device_p=0.05,
        genuine_big_p=0.01,
        fraud_delay_days=(10.0, 0.8, 2.0, 45.0),
    ),
}


class _Rows:
    """Fraud payments collected one by one (there are few of them)."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {f: [] for f in (*FIELDS, "pattern")}

    def __len__(self) -> int:
        return len(self.cols["ts"])

    def add(self, **values) -> None:
        for field, column in self.cols.items():
            column.append(values[field])

    def arrays(self) -> dict[str, np.ndarray]:
        floats = {"eur", "lat", "lon"}
        return {f: np.asarray(v, dtype=float if f in floats else np.int64) for f, v in self.cols.items()}


@dataclass
class _Fraud:
    world: _World
    tables: _Tables
    rng: np.random.Generator
    fakers: _Fakers
    gen: dict[str, np.ndarray]
    start_ms: int
    end_ms: int
    days: int
    rows: _Rows
    anchors: list[int]
    knobs: _Knobs

    def when(self, earliest_day: float) -> int:
        lo = self.start_ms + int(min(earliest_day, self.days / 4) * DAY_MS)
        return int(self.rng.integers(lo, self.end_ms - 6 * HOUR_MS))

    def clip(self, ts: int) -> int:
        return min(ts, self.end_ms - 1)

    def victim_card(self, c: int) -> int:
        w = self.world
        return int(w.card2[c]) if w.card2[c] >= 0 and self.rng.random() < 0.3 else int(w.card1[c])

    def attacker_name(self) -> int:
        fake = self.fakers[FAKER_LOCALES[int(self.rng.integers(0, len(FAKER_LOCALES)))]]
        return self.tables.names.add_one(f"{fake.first_name()} {fake.last_name()}")

    def attacker_email(self) -> int:
        fake = self.fakers["en_GB"]
        local = _mail_part(fake.user_name()) + str(int(self.rng.integers(1, 9999)))
        domain = FREE_MAIL[int(self.rng.integers(0, len(FREE_MAIL)))]
        return self.tables.emails.add_one(f"{local}@{domain}")

    def online_merchants(self, cats: Sequence[str], eur_only: bool = False) -> np.ndarray:
        w = self.world
        mask = np.isin(w.m_cat, [CAT[c] for c in cats])
        if eur_only:
            mask &= w.m_currency == 0
        return np.flatnonzero(mask)

    def spot(self, city: int) -> tuple[float, float]:
        return (
            round(float(CITY_LAT[city] + self.rng.normal(0, 0.03)), 5),
            round(float(CITY_LON[city] + self.rng.normal(0, 0.045)), 5),
        )


def _card_testing(f: _Fraud, budget: int) -> None:
    rng, w, t = f.rng, f.world, f.tables
    small = f.online_merchants(("digital_goods", "online_marketplace"), eur_only=True)
    large = f.online_merchants(("online_marketplace", "travel", "digital_goods"))
    n_bots = max(1, budget // 40)
    bot_dev = t.devices.add(_hex_ids(rng, n_bots, "d"))
    bot_ip = t.ips.add(_ipv4(rng, n_bots, datacenter=True))
    bot_city = rng.integers(0, N_CITIES, n_bots)
    customers = np.unique(f.gen["cust"])
    produced = events = 0
    while events == 0 or budget - produced >= 6:
        b = int(rng.integers(0, n_bots))
        c = int(rng.choice(customers))
        card = f.victim_card(c)
        datacenter = bool(rng.random() < f.knobs.testing_datacenter_p)
        if datacenter and rng.random() < 0.6:
            ip = int(bot_ip[b])
        else:
            ip = t.ips.add_one(_ipv4(rng, 1, datacenter=datacenter)[0])
        name = int(w.name[c]) if rng.random() < 0.8 else f.attacker_name()
        email = f.attacker_email() if rng.random() < 0.7 else int(w.email[c])
        lat, lon = f.spot(int(bot_city[b]))
        m1, m2 = (int(x) for x in rng.choice(small, 2))
        n_large = int(rng.integers(1, 3))
        n_small = max(5, min(int(rng.integers(5, 21)), budget - produced - n_large))
        ts = f.when(2)
        common = dict(cust=c, card=card, lat=lat, lon=lon, channel=ONLINE, device=int(bot_dev[b]), ip=ip)
        for _ in range(n_small):
            ts += int(1000 * (2 + rng.exponential(20)))
            eur = float(rng.choice([0.5, 1.0, 1.5, 2.0])) if rng.random() < 0.3 else float(rng.uniform(0.5, 3.0))
            m = m1 if rng.random() < 0.7 else m2
            f.rows.add(ts=f.clip(ts), merchant=m, eur=eur, name=name, email=email, pattern=1, **common)
        for _ in range(n_large):
            ts += int(rng.integers(3, 90)) * MINUTE_MS
            eur = float(np.clip(rng.lognormal(math.log(f.knobs.testing_large_eur), 0.55), 40, 3000))
            m = int(rng.choice(large))
            f.rows.add(ts=f.clip(ts), merchant=m, eur=eur, name=name, email=email, pattern=1, **common)
        produced += n_small + n_large
        events += 1


def _compromised_terminals(f: _Fraud, budget: int) -> None:
    rng, w = f.rng, f.world
    gen_m, gen_ts = f.gen["merchant"], f.gen["ts"]
    traffic = np.bincount(gen_m, minlength=len(w.m_id))
    cats = [
        CAT[c]
        for c in (
            "grocery",
            "restaurant",
            "fuel",
            "electronics",
            "fashion",
            "pharmacy",
            "entertainment",
        )
    ]
    candidates = np.flatnonzero(np.isin(w.m_cat, cats) & (traffic >= 10))
    if len(candidates) == 0:
        candidates = np.flatnonzero(np.isin(w.m_cat, cats))
    weights = traffic[candidates] + 1.0
    order = rng.choice(candidates, len(candidates), replace=False, p=weights / weights.sum())
    customers = np.unique(f.gen["cust"])
    produced = 0
    for events, m in enumerate(order.tolist()):
        if produced >= budget and events > 0:
            break
        length = min(int(rng.integers(2, 11)), max(1, f.days // 4))
        first_day = int(rng.integers(min(3, f.days - length), f.days - length + 1))
        lo, hi = f.start_ms + first_day * DAY_MS, f.start_ms + (first_day + length) * DAY_MS
        seen = int(((gen_m == m) & (gen_ts >= lo) & (gen_ts < hi)).sum())
        share = float(rng.uniform(*f.knobs.terminal_share))
        n = max(3, round(seen * share / (1 - share)))
        n = min(n, max(3, budget - produced), 150)
        cat = int(w.m_cat[m])
        offset = np.full(n, CITY_OFFSET[w.m_city[m]])
        times = np.sort(_local_times(rng, cat, n, offset, lo, length))
        terminal = int(w.m_term0[m])  # the compromised one
        pool = customers
        if f.knobs.terminal_locals:
            local = customers[w.home[customers] == w.m_city[m]]
            pool = local if len(local) else customers
        for ts in times.tolist():
            c = int(rng.choice(pool))
            eur = float(CAT_MEDIAN[cat] * rng.lognormal(math.log(f.knobs.terminal_amount), 0.4))
            f.rows.add(
                ts=ts,
                cust=c,
                card=f.victim_card(c),
                merchant=m,
                eur=eur,
                lat=math.nan,
                lon=math.nan,
                channel=POS,
                device=terminal,
                ip=int(w.dev_ip[terminal]),
                name=int(w.name[c]),
                email=int(w.email[c]),
                pattern=2,
            )
        produced += n


def _far_from_home(f: _Fraud, budget: int) -> None:
    rng, w, g = f.rng, f.world, f.gen
    window = (g["ts"] > f.start_ms + DAY_MS) & (g["ts"] < f.end_ms - 6 * HOUR_MS)
    present = np.isin(g["channel"], [POS, CONTACTLESS])
    anchors = np.flatnonzero(window & present & g["at_home"])
    shops = np.flatnonzero(np.isin(w.m_cat, [CAT[c] for c in f.knobs.far_cats]))
    shop_cities = np.unique(w.m_city[shops])
    victims: set[int] = set()
    produced = events = attempts = 0
    while (produced < budget or events == 0) and attempts < 100 * (budget + 10):
        attempts += 1
        a = int(rng.choice(anchors))
        c = int(g["cust"][a])
        if c in victims and len(victims) < len(np.unique(g["cust"][anchors])):
            continue
        far = shop_cities[CITY_DISTANCE_KM[w.home[c], shop_cities] >= FAR_KM]
        if len(far) == 0:
            continue
        city = int(rng.choice(far))
        here = shops[w.m_city[shops] == city]
        victims.add(c)
        f.anchors.append(a)
        n = min(int(rng.integers(1, 5)), max(1, budget - produced))
        ts = int(g["ts"][a]) + int(rng.integers(10, 100)) * MINUTE_MS
        for i in range(n):
            if i:
                ts += int(rng.integers(5, 60)) * MINUTE_MS
            m = int(rng.choice(here))
            eur = float(CAT_MEDIAN[w.m_cat[m]] * rng.lognormal(math.log(f.knobs.far_amount), 0.35))
            term = int(w.m_term0[m] + rng.integers(0, w.m_nterm[m]))
            f.rows.add(
                ts=f.clip(ts),
                cust=c,
                card=int(g["card"][a]),
                merchant=m,
                eur=eur,
                lat=math.nan,
                lon=math.nan,
                channel=POS,
                device=term,
                ip=int(w.dev_ip[term]),
                name=int(w.name[c]),
                email=int(w.email[c]),
                pattern=3,
            )
        produced += n
        events += 1


def _account_takeover(f: _Fraud, budget: int) -> None:
    rng, w, g, t = f.rng, f.world, f.gen, f.tables
    count = np.bincount(g["cust"], minlength=w.n_customers)
    usual = np.bincount(g["cust"], weights=g["eur"], minlength=w.n_customers) / np.maximum(count, 1)
    victims = np.flatnonzero(count >= 5)
    if len(victims) == 0:
        victims = np.flatnonzero(count >= 1)
    victims = rng.permutation(victims)
    kinds = (
        ("online_marketplace", 0.5, f.online_merchants(("online_marketplace",))),
        ("travel", 0.25, f.online_merchants(("travel",))),
        ("digital_goods", 0.25, f.online_merchants(("digital_goods",))),
    )
    produced = events = 0
    while produced < budget or events == 0:
        c = int(victims[events % len(victims)])
        if rng.random() < f.knobs.takeover_own_device_p:
            device = int(w.dev1[c])
            ip = t.ips.add_one(_ipv4(rng, 1)[0])
        else:
            device = t.devices.add_one(_hex_ids(rng, 1, "d")[0])
            ip = t.ips.add_one(_ipv4(rng, 1, datacenter=bool(rng.random() < 0.5))[0])
        email = f.attacker_email() if rng.random() < 0.35 else int(w.email[c])
        name = f.attacker_name() if rng.random() < 0.15 else int(w.name[c])
        place = int(rng.choice(np.flatnonzero(np.arange(N_CITIES) != w.home[c])))
        lat, lon = f.spot(place)
        n = min(int(rng.integers(1, 4)), max(1, budget - produced))
        ts = f.when(5)
        for i in range(n):
            if i:
                ts += int(rng.integers(5, 180)) * MINUTE_MS
            k = int(rng.choice(len(kinds), p=[p for _, p, _ in kinds]))
            m = int(rng.choice(kinds[k][2]))
            eur = float(max(usual[c], 15.0) * rng.uniform(*f.knobs.takeover_amount))
            f.rows.add(
                ts=f.clip(ts),
                cust=c,
                card=int(w.card1[c]),
                merchant=m,
                eur=eur,
                lat=lat,
                lon=lon,
                channel=ONLINE,
                device=device,
                ip=ip,
                name=name,
                email=email,
                pattern=4,
            )
        produced += n
        events += 1


# ----------------------------------------------------------------------------- the simulation


@dataclass
class _Simulated:
    """Generated payments in ts order, string columns as indices into the tables."""

    cols: dict[str, np.ndarray]
    pattern: np.ndarray
    known_at: np.ndarray
    references: list[str]
    world: _World
    tables: _Tables

    @property
    def n(self) -> int:
        return len(self.pattern)


class _Progress:
    def __init__(self, total: int, callback: Callable[[int], None] | None) -> None:
        self.total, self.callback, self.done = total, callback, 0

    def to(self, fraction: float) -> None:
        target = min(self.total, round(self.total * fraction))
        if target > self.done:
            step, self.done = target - self.done, target
            if self.callback is not None:
                self.callback(step)


BIG_CATS = ("electronics", "jewelry", "travel", "online_marketplace", "fashion")


def _look_alikes(
    world: _World, tables: _Tables, rng: np.random.Generator, gen: dict[str, np.ndarray], knobs: _Knobs
) -> None:
    """Genuine payments that look like fraud: a new phone or laptop, a big one-off purchase."""
    n = len(gen["ts"])
    new = (gen["channel"] == ONLINE) & (rng.random(n) < knobs.genuine_new_device_p)
    gen["device"][new] = tables.devices.add(_hex_ids(rng, int(new.sum()), "d"))
    gen["ip"][new] = tables.ips.add(_ipv4(rng, int(new.sum())))
    cat = world.m_cat[gen["merchant"]]
    big_cats = np.isin(cat, [CAT[c] for c in BIG_CATS])
    share = max(float(big_cats.mean()), 1e-9)
    big = big_cats & (rng.random(n) < knobs.genuine_big_p / share)
    gen["eur"][big] = gen["eur"][big] * rng.lognormal(math.log(4.0), 0.5, int(big.sum()))


def _generate(
    n_payments: int,
    days: int,
    seed: int,
    start_ms: int,
    progress: _Progress | None = None,
    difficulty: Difficulty = "hard",
) -> _Simulated:
    knobs = KNOBS[difficulty]
    progress = progress or _Progress(n_payments, None)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_world, rng_gen, rng_fraud, rng_amount, rng_label, rng_ref = streams
    fakers = _Fakers(seed)
    end_ms = start_ms + days * DAY_MS

    n_customers = max(40, round(n_payments / 25))
    n_merchants = max(50, n_payments // 250)
    world, tables = _build_world(rng_world, fakers, n_customers, n_merchants, days, start_ms)
    progress.to(0.05)

    budget = round(n_payments * rng_fraud.uniform(0.0085, 0.0095))
    slack = budget // 2 + 100
    gen = _genuine(world, tables, rng_gen, n_payments - budget + slack, days, start_ms)
    if knobs.genuine_new_device_p or knobs.genuine_big_p:
        _look_alikes(world, tables, rng_gen, gen, knobs)
    progress.to(0.25)

    fraud = _Fraud(world, tables, rng_fraud, fakers, gen, start_ms, end_ms, days, _Rows(), [], knobs)
    shares = np.round(np.asarray(knobs.share) * budget).astype(int)
    _card_testing(fraud, int(shares[0]))
    _compromised_terminals(fraud, int(shares[1]))
    _far_from_home(fraud, int(shares[2]))
    _account_takeover(fraud, int(shares[3]))
    bad = fraud.rows.arrays()
    n_genuine = n_payments - len(bad["ts"])
    n_extra = len(gen["ts"]) - n_genuine
    if n_genuine <= 0 or n_extra < 0:
        raise AssertionError(f"fraud budget overshot: {len(bad['ts'])} fraud payments")
    droppable = np.setdiff1d(np.arange(len(gen["ts"])), np.asarray(fraud.anchors, dtype=np.int64))
    keep = np.setdiff1d(np.arange(len(gen["ts"])), rng_fraud.choice(droppable, n_extra, replace=False))
    progress.to(0.3)

    cols = {f: np.concatenate([gen[f][keep], bad[f]]) for f in FIELDS}
    pattern = np.concatenate([np.zeros(len(keep), dtype=np.int64), bad["pattern"]])
    amount, currency = _localize(world, rng_amount, cols["eur"], cols["merchant"], pattern == 0)
    cols["amount"], cols["currency"] = amount, currency
    cols["lat"] = np.where(np.isnan(cols["lat"]), world.m_lat[cols["merchant"]], cols["lat"])
    cols["lon"] = np.where(np.isnan(cols["lon"]), world.m_lon[cols["merchant"]], cols["lon"])
    order = np.argsort(cols["ts"], kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    pattern = pattern[order]

    is_fraud = pattern > 0
    median, sigma, low, high = knobs.fraud_delay_days
    delay_days = np.clip(rng_label.lognormal(math.log(median), sigma, n_payments), low, high)
    delay = np.where(is_fraud, np.round(delay_days * DAY_MS).astype(np.int64), DISPUTE_WINDOW_MS)
    known_at = cols["ts"] + delay
    progress.to(0.35)

    references = _references(world, tables, rng_ref, cols)
    progress.to(0.45)
    return _Simulated(cols, pattern, known_at, references, world, tables)


# ----------------------------------------------------------------------------- references

REFERENCES: dict[str, tuple[str, ...]] = {
    "grocery": (
        "",
        "",
        "",
        "Groceries",
        "Weekly shop",
        "Receipt {n}",
        "Loyalty card {n}",
        "Groceries and household",
    ),
    "restaurant": (
        "",
        "",
        "Table {k}",
        "Lunch",
        "Dinner",
        "Tip included",
        "Order {n}",
        "Team lunch",
        "Table {k}, 2 guests",
    ),
    "fuel": ("", "", "Pump {k}", "Fuel", "Car wash", "Pump {k} + snacks"),
    "transport": ("", "", "", "Single ticket", "Day pass", "Zone 1-2", "Monthly pass"),
    "pharmacy": ("", "", "Prescription {n}", "Pharmacy", "Vitamins"),
    "fashion": ("", "", "Receipt {n}", "Exchange receipt {n}", "Shoes", "Sale items"),
    "electronics": (
        "",
        "Order {n}",
        "Warranty extension",
        "Receipt {n}",
        "Phone case",
        "Repair {code}",
    ),
    "jewelry": ("", "Repair ticket {n}", "Receipt {n}", "Engraving", "Watch battery"),
    "entertainment": (
        "",
        "Tickets",
        "2 tickets row {k}",
        "Cinema",
        "Concert tickets",
        "Membership",
    ),
    "atm_operator": ("", "", "", "Cash withdrawal", "ATM {n}"),
    "online_marketplace": (
        "Order {n}",
        "Order #{code}",
        "",
        "Marketplace order {n}",
        "Return label {code}",
    ),
    "digital_goods": (
        "Monthly subscription",
        "Annual subscription",
        "In-app purchase",
        "Gift card",
        "",
        "Subscription renewal",
        "Order {n}",
    ),
    "travel": (
        "Booking ref {code}",
        "Flight {code}",
        "Hotel booking {n}",
        "Seat reservation",
        "",
        "Train ticket {code}",
    ),
}
PII_REFERENCES: dict[str, tuple[str, ...]] = {
    "email": (
        "Receipt to {v}",
        "Please send the invoice to {v}",
        "Contact {v}",
        "Refund to {v}",
        "Questions? Mail {v}",
    ),
    "card": ("Refund to card {v}", "Paid with {v}", "New card {v}", "Card {v} on file"),
    "iban": ("Transfer to IBAN {v}", "Refund to {v}", "Rent share, IBAN {v}", "Please pay to {v}"),
    "ip": (
        "Login from {v}",
        "Order placed from {v}",
        "Device IP {v}",
        "Shipping quote requested from {v}",
    ),
    "name": (
        "Gift from {v}",
        "Birthday present for {v}",
        "Paid on behalf of {v}",
        "Dinner with {v}",
        "For {v}",
    ),
}
PII_KINDS = tuple(PII_REFERENCES)
PII_P = np.array([0.25, 0.18, 0.2, 0.15, 0.22])
PII_SHARE = 0.07


def _spaced(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def _references(world: _World, tables: _Tables, rng: np.random.Generator, cols) -> list[str]:
    n = len(cols["ts"])
    cat = world.m_cat[cols["merchant"]]
    pii = rng.random(n) < PII_SHARE
    refs = [""] * n
    for k, category in enumerate(CATEGORIES):
        rows = np.flatnonzero((cat == k) & ~pii)
        templates = REFERENCES[category.name]
        choice = rng.integers(0, len(templates), len(rows)).tolist()
        nums = rng.integers(1000, 99999, len(rows)).tolist()
        small = rng.integers(1, 40, len(rows)).tolist()
        codes = rng.integers(0, 36**6, len(rows)).tolist()
        for r, t, x, s, code in zip(rows.tolist(), choice, nums, small, codes, strict=True):
            template = templates[t]
            if "{" in template:
                refs[r] = template.format(n=x, k=s, code=_base36(code) if "{code}" in template else "")
            else:
                refs[r] = template

    rows = np.flatnonzero(pii)
    kinds = rng.choice(len(PII_KINDS), len(rows), p=PII_P).tolist()
    own = (rng.random(len(rows)) < 0.65).tolist()
    others = rng.integers(0, world.n_customers, len(rows)).tolist()
    templates_at = rng.integers(0, 5, len(rows)).tolist()
    bins = np.array([400000 + int(rng.integers(0, 100000)), 520000 + int(rng.integers(0, 40000))])
    spare_cards = _card_numbers(rng, len(rows), bins)
    spare_ips = _ipv4(rng, len(rows))
    countries = list(IBAN_LAYOUT)
    names, emails, cards = tables.names.values, tables.emails.values, tables.cards.values
    for i, r in enumerate(rows.tolist()):
        kind = PII_KINDS[kinds[i]]
        c = int(cols["cust"][r]) if own[i] else others[i]
        if kind == "email":
            value = emails[cols["email"][r]] if own[i] else emails[world.email[c]]
        elif kind == "card":
            value = _spaced(cards[cols["card"][r]] if own[i] else spare_cards[i])
        elif kind == "iban":
            country = CITIES[int(world.home[c])].country
            if rng.random() < 0.15:
                country = countries[int(rng.integers(0, len(countries)))]
            value = _iban(rng, country)
            value = _spaced(value) if rng.random() < 0.5 else value
        elif kind == "ip":
            value = spare_ips[i]
        else:
            value = names[cols["name"][r]] if own[i] else names[world.name[c]]
        templates = PII_REFERENCES[kind]
        refs[r] = templates[templates_at[i] % len(templates)].format(v=value)
    return refs


# ----------------------------------------------------------------------------- writing


class _PaymentLine(msgspec.Struct):
    payment_id: str
    ts: str
    customer_id: str
    card_number: str
    merchant_id: str
    amount: float
    currency: str
    lat: float
    lon: float
    channel: str
    device_id: str
    ip: str
    cardholder_name: str
    email: str
    reference: str


class _LabelLine(msgspec.Struct):
    payment_id: str
    merchant_id: str
    is_fraud: bool
    known_at: str
    customer_id: str


TS_TYPE = pa.timestamp("ms", tz="UTC")
PAYMENT_SCHEMA = pa.schema(
    [
        ("payment_id", pa.string()),
        ("ts", TS_TYPE),
        ("customer_id", pa.string()),
        ("card_number", pa.string()),
        ("merchant_id", pa.string()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("channel", pa.string()),
        ("device_id", pa.string()),
        ("ip", pa.string()),
        ("cardholder_name", pa.string()),
        ("email", pa.string()),
        ("reference", pa.string()),
    ]
)
LABEL_SCHEMA = pa.schema(
    [
        ("payment_id", pa.string()),
        ("merchant_id", pa.string()),
        ("is_fraud", pa.bool_()),
        ("known_at", TS_TYPE),
        ("customer_id", pa.string()),
    ]
)
CHUNK = 50_000


def _take(values: Sequence[str], index: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(index))


def _tables(sim: _Simulated) -> tuple[pa.Table, pa.Table]:
    cols, w, t = sim.cols, sim.world, sim.tables
    payment_id = pa.array([f"p{i:09d}" for i in range(1, sim.n + 1)], type=pa.string())
    merchant_id = _take(w.m_id, cols["merchant"])
    customer_id = _take(w.customer_ids, cols["cust"])
    payments = pa.Table.from_arrays(
        [
            payment_id,
            pa.array(cols["ts"], type=TS_TYPE),
            customer_id,
            _take(t.cards.values, cols["card"]),
            merchant_id,
            pa.array(cols["amount"], type=pa.float64()),
            _take(CURRENCIES, cols["currency"]),
            pa.array(np.round(cols["lat"], 5), type=pa.float64()),
            pa.array(np.round(cols["lon"], 5), type=pa.float64()),
            _take(CHANNELS, cols["channel"]),
            _take(t.devices.values, cols["device"]),
            _take(t.ips.values, cols["ip"]),
            _take(t.names.values, cols["name"]),
            _take(t.emails.values, cols["email"]),
            pa.array(sim.references, type=pa.string()),
        ],
        schema=PAYMENT_SCHEMA,
    )
    order = np.argsort(sim.known_at, kind="stable")
    labels = pa.Table.from_arrays(
        [
            payment_id.take(pa.array(order)),
            merchant_id.take(pa.array(order)),
            pa.array(sim.pattern[order] > 0, type=pa.bool_()),
            pa.array(sim.known_at[order], type=TS_TYPE),
            customer_id.take(pa.array(order)),
        ],
        schema=LABEL_SCHEMA,
    )
    return payments, labels


def _iso(ts: pa.Array) -> list[str]:
    ms = ts.cast(pa.int64()).to_numpy()
    return np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms", timezone="UTC").tolist()


def _write(
    table: pa.Table,
    path: Path,
    fmt: str,
    line: type[msgspec.Struct],
    advance: Callable[[int], None],
) -> None:
    if fmt == "parquet":
        with pq.ParquetWriter(path, table.schema, compression="zstd") as writer:
            for start in range(0, table.num_rows, CHUNK):
                chunk = table.slice(start, CHUNK)
                writer.write_table(chunk, row_group_size=CHUNK)
                advance(chunk.num_rows)
        return
    encoder = msgspec.json.Encoder()
    with path.open("wb") as handle:
        for start in range(0, table.num_rows, CHUNK):
            chunk = table.slice(start, CHUNK)
            columns = [
                _iso(col) if pa.types.is_timestamp(col.type) else col.to_pylist()
                for col in (chunk.column(i) for i in range(chunk.num_columns))
            ]
            handle.write(encoder.encode_lines(list(map(line, *columns))))
            advance(chunk.num_rows)


def _write_merchants(world: _World, path: Path) -> None:
    lines = ["merchant_id,category,lat,lon"]
    for i, mid in enumerate(world.m_id):
        lines.append(f"{mid},{CATEGORIES[int(world.m_cat[i])].name},{world.m_lat[i]:.5f},{world.m_lon[i]:.5f}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def simulate_fraud(
    out_dir: Path,
    *,
    n_payments: int = 500_000,
    days: int = 90,
    seed: int = 7,
    fmt: Literal["parquet", "jsonl"] = "parquet",
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    progress: Callable[[int], None] | None = None,
    difficulty: Difficulty = "hard",
) -> FraudSimulation:
    """Simulate `n_payments` card payments over `days` days from `start` and write them.

    Writes ``payments.<fmt>``, ``labels.<fmt>`` and ``merchants.csv`` into `out_dir` (created if
    needed). `progress` receives increments that add up to `n_payments`: part while the payments
    are generated, the rest as they are written. A naive `start` is taken as UTC.
    """
    if fmt not in ("parquet", "jsonl"):
        raise ValueError(f"fmt must be 'parquet' or 'jsonl', not {fmt!r}")
    if n_payments < MIN_PAYMENTS:
        raise ValueError(f"n_payments must be at least {MIN_PAYMENTS}, not {n_payments}")
    if difficulty not in KNOBS:
        raise ValueError(f"difficulty must be one of {sorted(KNOBS)}, not {difficulty!r}")
    if days < MIN_DAYS:
        raise ValueError(f"days must be at least {MIN_DAYS}, not {days}")
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    start_ms = round(start.timestamp() * 1000)

    tracker = _Progress(n_payments, progress)
    sim = _generate(n_payments, days, seed, start_ms, tracker, difficulty)
    payments, labels = _tables(sim)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = FraudSimulation(
        payments=out_dir / f"payments.{fmt}",
        labels=out_dir / f"labels.{fmt}",
        merchants=out_dir / "merchants.csv",
        n_payments=sim.n,
        n_fraud=int((sim.pattern > 0).sum()),
    )
    written = 0

    def advance(rows: int) -> None:  # writing is the last 55 %, payments and labels alike
        nonlocal written
        written += rows
        tracker.to(0.45 + 0.55 * written / (2 * sim.n))

    _write(payments, result.payments, fmt, _PaymentLine, advance)
    _write(labels, result.labels, fmt, _LabelLine, advance)
    _write_merchants(sim.world, result.merchants)
    tracker.to(1.0)
    return result
