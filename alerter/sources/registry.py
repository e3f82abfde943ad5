"""Which normaliser reads which exchange: an explicit dict, `generic` for every other id."""

from __future__ import annotations

from alerter.sources import binanceusdm, bybit, generic, okx
from alerter.sources.fields import Normaliser

NORMALISERS: dict[str, Normaliser] = {
    "binanceusdm": binanceusdm.normalise,
    "bybit": bybit.normalise,
    "okx": okx.normalise,
}


def normaliser_for(exchange_id: str) -> Normaliser:
    return NORMALISERS.get(exchange_id, generic.normalise)
