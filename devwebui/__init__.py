"""dev-webui: a stand-in SD-WebUI API server that draws PLACEHOLDER pictures, not real images.

It speaks the AUTOMATIC1111 v1.10 HTTP API (the routes drawbridge uses) closely enough to
develop and test the bot without a GPU: same request validation and error bodies, one FIFO
generation lock, /progress with live previews, interrupt/skip, auth. Every "generated" image
is a gradient coloured by its seed with the prompt written on it, at exactly the size the real
WebUI would return.

Flavours (`flavor=`, `--flavor`) play each fork as forks.md describes it:
- a1111: v1.10; `force_task_id` and POST /internal/progress bind progress to one request
  (not with `nowebui`); `freeze_settings` makes every changed override a 500.
- forge: `forge_*` keys in GET /options; hires without `hr_additional_modules` fails with a
  500 TypeError after the first pass; the hires pass runs at `hr_cfg` (default 1.0, and at
  1.0 without the negative prompt); Forge's error bodies.
- sdnext: answers GET /sdapi/v1/version; its own request model (`clip_skip` is a field, the
  CLIP_stop_at_last_layers option is read by nothing), samplers and upscaler names; hires
  upscales only with `hr_resize_mode` > 0; an unknown extras upscaler returns the picture
  unchanged; resize_mode 0 does not resize; the inpaint padding dilates the mask; errors,
  CUDA OOM and interrupts end in a 200 without pictures; restoring overrides reloads the old
  model at once; no /schedulers, no force_task_id.
`fail_next()` injects failures (oom, empty, unavailable, hang); `foreign_job()` runs another
client's job holding the lock, as a UI user does; `add_checkpoint()` drops in a model;
`passes` records what each sampling pass really ran with (steps, CFG, negative, size, clip
skip, model).

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
from devwebui.server import (
    FLAVORS,
    DevWebUI,
    ForeignJob,
    Pass,
    add_arguments,
    main,
    options_of,
    run_devwebui,
    serve,
)

__all__ = [
    "FLAVORS",
    "DevWebUI",
    "ForeignJob",
    "Pass",
    "add_arguments",
    "encode_png",
    "main",
    "options_of",
    "run_devwebui",
    "serve",
]
