"""Write ``tests/data/penguins_like.csv``: a small mixed-type table with missing cells.

A penguins-like dataset made up here (no download): 210 birds of three species
with their island and sex (string columns), four body measurements and the year
(numeric columns), and about 4 % of the feature cells left empty. The species is
the target. A fixed seed makes the file the same on every run:

    python scripts/make_penguins_like.py
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "penguins_like.csv"

#: species -> (islands, bill length, bill depth, flipper length, body mass) means.
SPECIES = {
    "Adelie": (["Biscoe", "Dream", "Torgersen"], 38.8, 18.3, 190.0, 3700.0),
    "Chinstrap": (["Dream"], 48.8, 18.4, 196.0, 3730.0),
    "Gentoo": (["Biscoe"], 47.5, 15.0, 217.0, 5080.0),
}
COLUMNS = [
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]


def rows(n_per_species: int = 70, seed: int = 0) -> list[list[str]]:
    """Return the table's rows (strings; empty strings are missing cells)."""
    rng = np.random.default_rng(seed)
    out = []
    for species, (islands, bill, depth, flipper, mass) in SPECIES.items():
        for _ in range(n_per_species):
            sex = str(rng.choice(["male", "female"]))
            grow = 1.04 if sex == "male" else 0.96
            cells = [
                species,
                str(rng.choice(islands)),
                f"{rng.normal(bill, 2.5) * grow:.1f}",
                f"{rng.normal(depth, 0.9) * grow:.1f}",
                f"{rng.normal(flipper, 6.0) * grow:.0f}",
                f"{rng.normal(mass, 350.0) * grow:.0f}",
                sex,
                str(rng.choice([2007, 2008, 2009])),
            ]
            for j in range(1, len(cells)):
                if rng.random() < 0.04:
                    cells[j] = ""
            out.append(cells)
    order = rng.permutation(len(out))
    return [out[i] for i in order]


def main() -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows())
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
