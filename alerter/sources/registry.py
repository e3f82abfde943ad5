"""Which normaliser reads which exchange: an explicit dict, `generic` for every other id; and
which exchanges have a documented answer shape to check raw bodies against (every other
exchange's answers must still be complete JSON)."""

from __future__ import annotations

from alerter.sources import binanceusdm, bybit, generic, okx
from alerter.sources.fields import BodyCheck, Normaliser

NORMALISERS: dict[str, Normaliser] = {
    "binanceusdm": binanceusdm.normalise,
    "bybit": bybit.normalise,
    "okx": okx.normalise,
}


def normaliser_for(exchange_id: str) -> Normaliser:
    return NORMALISERS.get(exchange_id, generic.normalise)


BODY_CHECKS: dict[str, BodyCheck] = {
    "binanceusdm": binanceusdm.check_body,
    "bybit": bybit.check_body,
    "okx": okx.check_body,
}


def body_check_for(exchange_id: str) -> BodyCheck | None:
    return BODY_CHECKS.get(exchange_id)
