"""The JSON control API under /control/ (never faulted, delayed or counted).

GET    /control/state                  scenario, elapsed, prices, pins, accounts with risk numbers
POST   /control/prices                 {"BTCUSDT": 42000}: pin marks (the path stops for them)
DELETE /control/prices                 unpin all: every symbol follows the path again
POST   /control/time                   {"elapsed": 95, "speed": 10} (either key): move on the path
POST   /control/scenario               {"name": "demo"} | {"toml": "..."} | {"scenario": {...}}
POST   /control/reset                  reload the current scenario (accounts, pins, clock)
POST   /control/accounts/{api_key}     {"name", "wallet_balance", "positions": [...]} create/update
GET    /control/faults                 active faults
POST   /control/faults                 {"kind", "count" (null = until cleared), "seconds", "api_key", "path",
                                        "symbol" (drop_position)}
DELETE /control/faults                 clear all faults
GET    /control/ws-faults              active websocket faults
POST   /control/ws-faults              {"kind": "drop" | "stall" | "refuse", "stream": "public" | "private" | null,
                                        "seconds" (null = until cleared)}
DELETE /control/ws-faults              clear the websocket faults
POST   /control/margin-call/{api_key}  {"symbols": ["ETHUSDT"]} (optional): push Binance's MARGIN_CALL
POST   /control/latency                {"seconds": 0.05}: added to every exchange-API request
GET    /control/requests               {"total": N, "requests": [{"api_key", "path", "count"}]}
DELETE /control/requests               reset the counters
Errors: 400 {"error": "..."}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from alerter.simulator.scenario import ScenarioError, load_scenario, parse_positions, parse_scenario, scenario_from_toml

if TYPE_CHECKING:
    from alerter.simulator.server import Simulator

SIM_KEY: web.AppKey[Any] = web.AppKey("simulator")


def _sim(request: web.Request) -> Simulator:
    return request.app[SIM_KEY]


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f'{{"error": "body is not JSON: {exc}"}}', content_type="application/json")
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}', content_type="application/json")
    return data


def _state(request: web.Request) -> web.Response:
    sim = _sim(request)
    body = sim.state.snapshot()
    body["faults"] = sim.faults.as_list()
    body["latency"] = sim.latency
    return web.json_response(body)


async def get_state(request: web.Request) -> web.Response:
    return _state(request)


async def post_prices(request: web.Request) -> web.Response:
    try:
        _sim(request).set_prices(await _body(request))
    except ValueError as exc:
        return _bad(str(exc))
    return _state(request)


async def delete_prices(request: web.Request) -> web.Response:
    _sim(request).unpin()
    return _state(request)


async def post_time(request: web.Request) -> web.Response:
    data = await _body(request)
    state = _sim(request).state
    try:
        if "speed" in data:
            state.set_speed(float(data["speed"]))
        if "elapsed" in data:
            state.set_elapsed(float(data["elapsed"]))
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return _state(request)


async def post_scenario(request: web.Request) -> web.Response:
    data = await _body(request)
    try:
        if "name" in data:
            scenario = load_scenario(str(data["name"]))
        elif "toml" in data:
            scenario = scenario_from_toml(str(data["toml"]))
        elif "scenario" in data:
            scenario = parse_scenario(data["scenario"])
        else:
            return _bad('give one of "name", "toml" or "scenario"')
    except ScenarioError as exc:
        return _bad(str(exc))
    _sim(request).load(scenario)
    return _state(request)


async def post_reset(request: web.Request) -> web.Response:
    _sim(request).reset()
    return _state(request)


async def post_account(request: web.Request) -> web.Response:
    data = await _body(request)
    unknown = set(data) - {"name", "wallet_balance", "positions"}
    if unknown:
        return _bad(f"unknown keys: {', '.join(sorted(unknown))}")
    try:
        positions = parse_positions(data["positions"]) if "positions" in data else None
        wallet = data.get("wallet_balance")
        if wallet is not None and (isinstance(wallet, bool) or not isinstance(wallet, (int, float))):
            return _bad("wallet_balance must be a number")
        _sim(request).set_account(
            request.match_info["api_key"], name=data.get("name"), wallet_balance=wallet, positions=positions
        )
    except (ScenarioError, ValueError) as exc:
        return _bad(str(exc))
    return _state(request)


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).faults.as_list())


async def post_fault(request: web.Request) -> web.Response:
    data = await _body(request)
    unknown = set(data) - {"kind", "count", "seconds", "api_key", "path", "symbol"}
    if unknown:
        return _bad(f"unknown keys: {', '.join(sorted(unknown))}")
    try:
        fault = _sim(request).inject(
            str(data.get("kind")), data.get("count", 1), data.get("seconds"), data.get("api_key"), data.get("path"),
            data.get("symbol"),
        )
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response(fault.as_dict())


async def delete_faults(request: web.Request) -> web.Response:
    _sim(request).clear_faults()
    return web.json_response([])


async def get_ws_faults(request: web.Request) -> web.Response:
    return web.json_response(_sim(request).ws.faults.as_list())


async def post_ws_fault(request: web.Request) -> web.Response:
    data = await _body(request)
    unknown = set(data) - {"kind", "stream", "seconds"}
    if unknown:
        return _bad(f"unknown keys: {', '.join(sorted(unknown))}")
    try:
        await _sim(request).ws_fault(str(data.get("kind")), data.get("stream"), data.get("seconds"))
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response(_sim(request).ws.faults.as_list())


async def delete_ws_faults(request: web.Request) -> web.Response:
    _sim(request).clear_ws_faults()
    return web.json_response([])


async def post_margin_call(request: web.Request) -> web.Response:
    data = await _body(request)
    sim, api_key = _sim(request), request.match_info["api_key"]
    if api_key not in sim.state.accounts:
        return _bad(f"no account with API key {api_key!r}")
    symbols = data.get("symbols")
    if symbols is not None and (not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols)):
        return _bad("symbols must be a list of exchange symbols such as ['ETHUSDT']")
    return web.json_response(await sim.margin_call(api_key, symbols))


async def post_latency(request: web.Request) -> web.Response:
    data = await _body(request)
    try:
        _sim(request).set_latency(float(data.get("seconds", 0)))
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    return web.json_response({"latency": _sim(request).latency})


async def get_requests(request: web.Request) -> web.Response:
    sim = _sim(request)
    rows = [
        {"api_key": key, "path": path, "count": count}
        for (key, path), count in sorted(sim.request_counts().items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
    ]
    return web.json_response({"total": sim.request_total(), "requests": rows})


async def delete_requests(request: web.Request) -> web.Response:
    _sim(request).reset_counts()
    return web.json_response({"total": 0, "requests": []})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/control/state", get_state)
    r.add_post("/control/prices", post_prices)
    r.add_delete("/control/prices", delete_prices)
    r.add_post("/control/time", post_time)
    r.add_post("/control/scenario", post_scenario)
    r.add_post("/control/reset", post_reset)
    r.add_post("/control/accounts/{api_key}", post_account)
    r.add_get("/control/faults", get_faults)
    r.add_post("/control/faults", post_fault)
    r.add_delete("/control/faults", delete_faults)
    r.add_get("/control/ws-faults", get_ws_faults)
    r.add_post("/control/ws-faults", post_ws_fault)
    r.add_delete("/control/ws-faults", delete_ws_faults)
    r.add_post("/control/margin-call/{api_key}", post_margin_call)
    r.add_post("/control/latency", post_latency)
    r.add_get("/control/requests", get_requests)
    r.add_delete("/control/requests", delete_requests)
