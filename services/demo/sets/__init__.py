"""The demo sets (``antq demo [SET]``): each article's figures recorded as its offices would have recorded them.

A set is a module with a ``SET`` (``services.demo.framework.DemoSet``); ``SETS`` lists them by name.
"""

from __future__ import annotations

from services.demo.framework import DemoSet
from services.demo.sets import (
    gia_binh_2014_2019,
    quang_ninh_2012,
    thanh_hoa_2024,
    tra_linh_2018,
    vinh_dien_2020,
)

SETS: dict[str, DemoSet] = {
    s.name: s
    for s in (
        tra_linh_2018.SET,
        quang_ninh_2012.SET,
        gia_binh_2014_2019.SET,
        thanh_hoa_2024.SET,
        vinh_dien_2020.SET,
    )
}
DEFAULT = "tra-linh-2018"
