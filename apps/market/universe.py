"""A plausible, reproducible universe of listed companies for the demo market.

Names are built from sector-flavoured words, tickers from the names; the same
seed always gives the same universe. Sector profiles (annual drift and
volatility) also drive the simulator's geometric Brownian motion.
"""

import random
from dataclasses import dataclass
from decimal import Decimal

from apps.market.models import Sector


@dataclass(frozen=True)
class SectorProfile:
    drift: float  # expected annual return
    volatility: float  # annual standard deviation of returns
    price_range: tuple[int, int]
    words: tuple[str, ...]
    suffixes: tuple[str, ...]


SECTOR_PROFILES: dict[str, SectorProfile] = {
    Sector.TECHNOLOGY: SectorProfile(
        0.12,
        0.45,
        (20, 600),
        ("Quantum", "Nimbus", "Vertex", "Pixel", "Cipher", "Helix", "Nova", "Byte", "Lumen", "Axon"),
        ("Systems", "Software", "Networks", "Labs", "Semiconductor"),
    ),
    Sector.HEALTHCARE: SectorProfile(
        0.08,
        0.35,
        (15, 400),
        ("Vita", "Cura", "Genix", "Medi", "Thera", "Bio", "Cell", "Pulse", "Neuro", "Immuno"),
        ("Therapeutics", "Health", "Pharma", "Biosciences", "Medical"),
    ),
    Sector.FINANCIALS: SectorProfile(
        0.07,
        0.25,
        (10, 300),
        ("Summit", "Harbor", "Granite", "Sterling", "Crown", "Anchor", "Liberty", "Meridian", "Beacon", "Keystone"),
        ("Bancorp", "Financial", "Capital", "Trust", "Holdings"),
    ),
    Sector.ENERGY: SectorProfile(
        0.05,
        0.40,
        (8, 180),
        ("Petro", "Solar", "Terra", "Volt", "Basin", "Aurora", "Flare", "Wind", "Delta", "Ridge"),
        ("Energy", "Resources", "Power", "Oil & Gas", "Renewables"),
    ),
    Sector.CONSUMER: SectorProfile(
        0.06,
        0.28,
        (10, 250),
        ("Maple", "Urban", "Golden", "Fresh", "Blue", "Happy", "Coastal", "Prime", "Willow", "Bright"),
        ("Brands", "Foods", "Retail", "Apparel", "Goods"),
    ),
    Sector.INDUSTRIALS: SectorProfile(
        0.06,
        0.27,
        (15, 300),
        ("Atlas", "Iron", "Forge", "Titan", "Steel", "Orbit", "Vector", "Pioneer", "Union", "Falcon"),
        ("Industries", "Aerospace", "Machinery", "Logistics", "Manufacturing"),
    ),
    Sector.UTILITIES: SectorProfile(
        0.04,
        0.15,
        (20, 120),
        ("Clear", "River", "Valley", "North", "Pacific", "Lake", "Stone", "Green", "Grid", "Civic"),
        ("Utilities", "Water", "Electric", "Gas", "Power"),
    ),
    Sector.MATERIALS: SectorProfile(
        0.05,
        0.32,
        (10, 200),
        ("Cobalt", "Quarry", "Alloy", "Crystal", "Carbon", "Silica", "Copper", "Lithium", "Timber", "Mineral"),
        ("Materials", "Mining", "Chemicals", "Metals", "Polymers"),
    ),
    Sector.REAL_ESTATE: SectorProfile(
        0.05,
        0.22,
        (10, 150),
        ("Parkside", "Landmark", "Cornerstone", "Skyline", "Haven", "Plaza", "Estate", "Tower", "Garden", "Harbor"),
        ("Realty", "Properties", "REIT", "Estates", "Land"),
    ),
    Sector.COMMUNICATION: SectorProfile(
        0.09,
        0.38,
        (10, 350),
        ("Echo", "Signal", "Wave", "Stream", "Orbit", "Relay", "Spark", "Vista", "Fusion", "Channel"),
        ("Media", "Telecom", "Communications", "Interactive", "Broadcasting"),
    ),
}


@dataclass(frozen=True)
class ListedCompany:
    ticker: str
    name: str
    sector: str
    initial_price: Decimal


def _ticker(name: str, taken: set[str], rng: random.Random) -> str:
    letters = [c for c in name.upper() if c.isalpha()]
    candidates = [letters[0] + "".join(rng.sample(letters[1:], k=min(k, len(letters) - 1))) for k in (2, 3, 2, 3, 3)]
    for candidate in candidates:
        if candidate not in taken:
            return candidate
    while True:  # fall back to random letters; terminates quickly for a few thousand symbols
        candidate = "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ", k=4))
        if candidate not in taken:
            return candidate


def generate_universe(count: int, *, seed: int = 7) -> list[ListedCompany]:
    """`count` companies spread over all sectors, identical for the same seed."""
    rng = random.Random(seed)
    sectors = list(SECTOR_PROFILES)
    taken_tickers: set[str] = set()
    taken_names: set[str] = set()
    companies: list[ListedCompany] = []
    while len(companies) < count:
        sector = sectors[len(companies) % len(sectors)]
        profile = SECTOR_PROFILES[sector]
        first, second = rng.sample(profile.words, k=2)
        stem = f"{first} {second}" if rng.random() < 0.3 else f"{first}{second.lower()}"
        name = f"{stem} {rng.choice(profile.suffixes)}"
        if name in taken_names:
            continue
        taken_names.add(name)
        ticker = _ticker(name, taken_tickers, rng)
        taken_tickers.add(ticker)
        low, high = profile.price_range
        price = Decimal(str(round(rng.uniform(low, high), 2))).quantize(Decimal("0.01"))
        companies.append(ListedCompany(ticker, name, str(sector), price))
    return companies
