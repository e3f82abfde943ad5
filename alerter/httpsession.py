"""An aiohttp session opened at the first request: the JSON-RPC client of the on-chain venues and
the Telegram Bot API client share it. aiohttp is imported then, not when a module that holds a
client is imported (`alerter --help` and `validate` load neither)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp


class LazySession:
    """Subclasses call `_client(**session_options)` for the session; `close()` or `async with`
    closes it (and a later request opens a new one)."""

    _session: aiohttp.ClientSession | None = None

    def _client(self, **options: Any) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(**options)
        return self._session

    async def __aenter__(self) -> LazySession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
