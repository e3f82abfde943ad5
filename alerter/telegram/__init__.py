"""The Telegram bot: it delivers alerts to [telegram]'s chats with an "Acknowledge 1h" button,
and answers the owner's commands there (long polling, inside the daemon).

    api.py       the Bot API over aiohttp
    sender.py    one alert message to the chats (alerter.notify.Notifier's target for the channel)
    commands.py  parsing, dispatch and rendering of /status, /ack, /unack, /history, /whatif, /digest, /help
    bot.py       the getUpdates loop: backoff, health, owner-only, rate limit

Importing this package costs nothing (the config reads these names); the modules load only
with [telegram] set.
"""

CHANNEL = "telegram"  # the channel name of [telegram]'s chats
BOT_URL = "telegram-bot://"  # that channel's URL: not apprise's; alerter.notify hands its messages to sender.py
