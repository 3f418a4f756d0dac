"""dev-webui: a stand-in SD-WebUI API server that draws PLACEHOLDER pictures, not real images.

It speaks the AUTOMATIC1111 v1.10 HTTP API (the routes drawbridge uses) closely enough to
develop and test the bot without a GPU: same request validation and error bodies, one FIFO
generation lock, /progress with live previews, interrupt/skip, auth. Every "generated" image
is a gradient coloured by its seed with the prompt written on it, at exactly the size the real
WebUI would return.

Timing rule: each sampling pass takes `delay` seconds inside the lock (a request runs n_iter
passes, twice as many with hires fix), so a default request holds the lock for `delay`
seconds; `steps` only sets how finely /progress advances. After the lock is released the
response spends `encode_delay` seconds "encoding", like the real WebUI's PNG encoding.
A checkpoint change (override_settings, POST /options) costs `switch_delay` extra.

`DevWebUI.requests` records every request as (path, JSON body or None), /progress polls
included, so tests can assert on exact payloads.

Not followed: http(s) URLs as input images are never fetched (500, as if requests were
disabled); styles, scripts, VAEs and face restoration are accepted but do nothing; resize_mode
and mask blur do not change the picture. With api=False the Lora extension's /sdapi/v1/loras
still answers, as it does on a real WebUI started without --api.

The package: `fields` (request fields and listings of the API), `validation` (pydantic-v1-style
checks and the WebUI's error bodies), `pictures` (placeholders, previews, infotext), `server`
(`DevWebUI`, `serve`, `main`). A tool for developing and testing drawbridge, not part of the
bot: `drawbridge dev-webui` and `python -m devwebui` start it.
"""

from devwebui.pictures import encode_png
from devwebui.server import DevWebUI, main, run_devwebui, serve

__all__ = ["DevWebUI", "encode_png", "main", "run_devwebui", "serve"]
