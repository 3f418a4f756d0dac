"""The one catalogue of user-facing text, in English and Simplified Chinese.

Keys are dotted by area. Every entry has both languages; `tests/test_i18n.py` checks that the
placeholders agree. Add new text here, never inline in code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Plural:
    """An entry's text with plural forms, chosen by the named count parameter (English: "one"
    for exactly 1, else "other"; Chinese needs no plural, so its text stays a plain string)."""

    count: str
    one: str
    other: str

    def form(self, params: dict[str, object]) -> str:
        """The form for the count among `params` ("other" when it is missing)."""
        return self.one if params.get(self.count) == 1 else self.other


MESSAGES: dict[str, dict[str, str | Plural]] = {
    # --- generic -------------------------------------------------------------------------
    "error.internal": {
        "en": "Something went wrong on our side. Nothing was charged; please try again.",
        "zh": "我们这边出了点问题。没有扣除额度，请重试。",
    },
    "error.input": {
        "en": "That request could not be understood: {detail}",
        "zh": "无法理解这个请求：{detail}",
    },
    "error.not_allowed": {
        "en": "Only the person who started this job (or an admin) can do that.",
        "zh": "只有发起该任务的人（或管理员）可以这样做。",
    },
    "error.not_found": {
        "en": "Nothing called {what} was found.",
        "zh": "找不到 {what}。",
    },
    # --- options / parser ----------------------------------------------------------------
    "option.unknown": {
        "en": "Unknown option {flag}. Options are: {known}.",
        "zh": "未知选项 {flag}。可用选项：{known}。",
    },
    "option.did_you_mean": {
        "en": "{known} (did you mean {flag}?)",
        "zh": "{known}（你是不是想用 {flag}？）",
    },
    "option.missing_value": {
        "en": "{flag} needs a value: {accepts}.",
        "zh": "{flag} 需要一个值：{accepts}。",
    },
    "option.bad_value": {
        "en": "{flag} got {value!r}, but it accepts {accepts}.",
        "zh": "{flag} 的值 {value!r} 无效，可接受：{accepts}。",
    },
    "option.out_of_range": {
        "en": "{flag} must be between {low} and {high}; you gave {value}.",
        "zh": "{flag} 必须在 {low} 到 {high} 之间；你给的是 {value}。",
    },
    "option.bad_choice": {
        "en": "{flag} must be one of: {choices}; you gave {value!r}.",
        "zh": "{flag} 必须是以下之一：{choices}；你给的是 {value!r}。",
    },
    "option.conflict": {
        "en": "Use either {a} or {b}, not both.",
        "zh": "{a} 和 {b} 只能用一个。",
    },
    "option.unclosed_quote": {
        "en": 'A double quote is not closed. Put values with spaces in "double quotes".',
        "zh": '双引号没有闭合。含空格的值请放在 "双引号" 中。',
    },
    "option.empty_prompt": {
        "en": "Please describe what to draw, e.g. /draw a red fox in the snow",
        "zh": "请描述要画的内容，例如：/draw a red fox in the snow",
    },
    "option.prompt_too_long": {
        "en": "The prompt is {length} characters long; the limit here is {limit}. Please shorten it.",
        "zh": "提示词有 {length} 个字符，这里的上限是 {limit}。请缩短一些。",
    },
    "option.repeated": {
        "en": "{flag} is given twice. Give it once, with the value you want.",
        "zh": "{flag} 出现了两次。请只写一次，填上你想要的值。",
    },
    "option.negative_too_long": {
        "en": "The negative prompt is {length} characters long; the limit here is {limit}. "
        "Please shorten it.",
        "zh": "反向提示词有 {length} 个字符，这里的上限是 {limit}。请缩短一些。",
    },
    "option.bad_name": {
        "en": "{flag} {value} cannot be a name the drawing servers use. See /models for the "
        "names they offer.",
        "zh": "{flag} {value} 不可能是绘图服务器使用的名称。用 /models 查看可用的名称。",
    },
    "option.needs_picture": {
        "en": "{flags} only work when you send a picture to start from. Attach one, or leave "
        "them out.",
        "zh": "{flags} 只有在你发送起始图片时才有效。请附上一张图片，或去掉这些选项。",
    },
    "telegram.anonymous": {
        "en": "drawbridge needs to know who asks (credits are per person): anonymous admins and "
        'channels cannot draw. Turn off "Remain anonymous" or write to me in private.',
        "zh": "drawbridge 需要知道是谁在请求（额度按人计算）：匿名管理员和频道无法使用。"
        "请关闭“保持匿名”，或私聊我。",
    },
    "option.too_many_pixels": {
        "en": "{width}×{height} is too large; the limit is {limit} pixels "
        "(for example {example}). Try a smaller --size or --ar.",
        "zh": "{width}×{height} 太大了；上限是 {limit} 像素（例如 {example}）。请用更小的 --size 或 --ar。",
    },
    "option.unknown_preset": {
        "en": "There is no preset called {value!r}. Presets: {choices}.",
        "zh": "没有名为 {value!r} 的预设。可用预设：{choices}。",
    },
    "option.accepts_int": {"en": "a whole number", "zh": "一个整数"},
    "option.accepts_float": {"en": "a number", "zh": "一个数字"},
    "option.accepts_size": {
        "en": "a size like 512x768",
        "zh": "像 512x768 这样的尺寸",
    },
    "option.accepts_ratio": {
        "en": "a ratio like 2:3 or 16:9",
        "zh": "像 2:3 或 16:9 这样的比例",
    },
    "option.accepts_text": {"en": "some text", "zh": "一段文字"},
    # --- help (generated from the option declaration) ------------------------------------
    "help.draw_usage": {
        "en": 'Usage: /draw PROMPT [options]. Values with spaces go in "double quotes".',
        "zh": '用法：/draw 提示词 [选项]。含空格的值请放在 "双引号" 中。',
    },
    "help.example": {
        "en": "Example: /draw a red fox --seed 42 --steps 20 --size 512x512",
        "zh": "示例：/draw a red fox --seed 42 --steps 20 --size 512x512",
    },
    "help.opt.neg": {
        "en": "things to avoid (negative prompt)",
        "zh": "不希望出现的内容（反向提示词）",
    },
    "help.opt.ar": {"en": "aspect ratio, e.g. 2:3 or 16:9", "zh": "宽高比，例如 2:3 或 16:9"},
    "help.opt.size": {
        "en": "exact size WIDTHxHEIGHT, e.g. 512x768",
        "zh": "精确尺寸 宽x高，例如 512x768",
    },
    "help.opt.steps": {"en": "sampling steps", "zh": "采样步数"},
    "help.opt.cfg": {
        "en": "how closely to follow the prompt (CFG scale)",
        "zh": "遵循提示词的程度（CFG）",
    },
    "help.opt.seed": {"en": "seed; -1 for random", "zh": "种子；-1 表示随机"},
    "help.opt.sampler": {"en": 'sampler name, e.g. "Euler a"', "zh": '采样器名称，例如 "Euler a"'},
    "help.opt.model": {"en": "checkpoint to use", "zh": "使用的模型"},
    "help.opt.n": {"en": "number of images", "zh": "图片数量"},
    "help.opt.strength": {
        "en": "how much to change the init image (denoising)",
        "zh": "对初始图片的改动程度（重绘幅度）",
    },
    "help.opt.hires": {"en": "hires fix on", "zh": "开启高清修复"},
    "help.opt.no_hires": {"en": "hires fix off", "zh": "关闭高清修复"},
    "help.opt.preset": {"en": "named preset set up by the operator", "zh": "管理员设置的预设"},
    "help.opt.invert": {"en": "repaint what is NOT masked", "zh": "重绘蒙版以外的区域"},
    "help.opt.fill": {"en": "what the masked area starts from", "zh": "蒙版区域的初始内容"},
    "help.opt.only_masked": {
        "en": "inpaint the masked area at full resolution",
        "zh": "以全分辨率重绘蒙版区域",
    },
    "help.default": {"en": "default {value}", "zh": "默认 {value}"},
    "help.range": {"en": "{low}–{high}", "zh": "{low}–{high}"},
    # --- queue / jobs -------------------------------------------------------------------
    "queue.full": {
        "en": Plural(
            "count",
            one="You already have {count} job waiting (the limit is {limit}). "
            "Wait for it to finish or /cancel it.",
            other="You already have {count} jobs waiting (the limit is {limit}). "
            "Wait for one to finish or /cancel one.",
        ),
        "zh": "你已有 {count} 个任务在排队（上限 {limit}）。请等其中一个完成，或用 /cancel 取消。",
    },
    "queue.queued": {
        "en": "Queued: position {position}, starting in about {eta}.",
        "zh": "已排队：第 {position} 位，大约 {eta} 后开始。",
    },
    "queue.queued_next": {"en": "Queued: you are next.", "zh": "已排队：下一个就是你。"},
    "queue.running": {"en": "Drawing… {percent}%", "zh": "正在绘制… {percent}%"},
    "queue.done": {"en": "Done in {seconds}s.", "zh": "完成，用时 {seconds} 秒。"},
    "queue.cancelled": {
        "en": Plural(
            "credits",
            one="Cancelled. Your {credits} credit was returned.",
            other="Cancelled. Your {credits} credits were returned.",
        ),
        "zh": "已取消。已退还 {credits} 点额度。",
    },
    "queue.failed": {
        "en": Plural(
            "credits",
            one="This job failed: {reason} Your {credits} credit was returned.",
            other="This job failed: {reason} Your {credits} credits were returned.",
        ),
        "zh": "任务失败：{reason} 已退还 {credits} 点额度。",
    },
    "queue.retrying": {
        "en": "The server drawing this went away; trying another one (attempt {attempt} of {max}).",
        "zh": "正在绘制的服务器掉线了，正在换一台重试（第 {attempt}/{max} 次）。",
    },
    "queue.no_backend": {
        "en": "No drawing server is available right now; your job waits until one comes back.",
        "zh": "目前没有可用的绘图服务器；任务会等待服务器恢复。",
    },
    "queue.too_many_attempts": {
        "en": Plural(
            "attempts",
            one="It failed on {attempts} attempt; the drawing servers seem to be in trouble. "
            "Please try again later.",
            other="It failed on {attempts} attempts; the drawing servers seem to be in trouble. "
            "Please try again later.",
        ),
        "zh": "已尝试 {attempts} 次仍失败，绘图服务器可能出了问题。请稍后再试。",
    },
    "queue.job_not_found": {
        "en": "There is no job {job} to cancel; it may have finished already.",
        "zh": "没有可取消的任务 {job}；它可能已经完成了。",
    },
    "queue.nothing_to_cancel": {
        "en": "You have no queued or running jobs.",
        "zh": "你没有正在排队或运行的任务。",
    },
    "queue.empty": {"en": "The queue is empty.", "zh": "队列是空的。"},
    "queue.summary": {
        "en": Plural(
            "backends",
            one="{queued} waiting, {running} drawing, on {backends} server.",
            other="{queued} waiting, {running} drawing, on {backends} servers.",
        ),
        "zh": "{queued} 个排队中，{running} 个正在绘制，共 {backends} 台服务器。",
    },
    "eta.seconds": {"en": "{n} s", "zh": "{n} 秒"},
    "eta.minutes": {"en": "{n} min", "zh": "{n} 分钟"},
    "action.expired": {
        "en": "This button no longer works (the picture was cleaned up). Send /draw again.",
        "zh": "这个按钮已失效（图片已被清理）。请重新发送 /draw。",
    },
    # --- quota ---------------------------------------------------------------------------
    "quota.exceeded": {
        "en": Plural(
            "cost",
            one="This needs {cost} credit and you have {balance} left. "
            "Credits refill at {reset}; fewer images, steps or a smaller size cost less.",
            other="This needs {cost} credits and you have {balance} left. "
            "Credits refill at {reset}; fewer images, steps or a smaller size cost less.",
        ),
        "zh": "这需要 {cost} 点额度，你还剩 {balance} 点。额度将在 {reset} 恢复；"
        "减少图片数量、步数或尺寸可以更省。",
    },
    "quota.show": {
        "en": Plural(
            "balance",
            one="{user}: {balance} credit left today (daily {allowance}, extra {bonus}); "
            "{reserved} reserved by queued jobs. Refills at {reset}.",
            other="{user}: {balance} credits left today (daily {allowance}, extra {bonus}); "
            "{reserved} reserved by queued jobs. Refills at {reset}.",
        ),
        "zh": "{user}：今日剩余 {balance} 点（每日 {allowance}，额外 {bonus}）；"
        "排队任务占用 {reserved} 点。将在 {reset} 恢复。",
    },
    "quota.granted": {
        "en": Plural(
            "amount",
            one="Granted {amount} extra credit to {user}; they now have {balance}.",
            other="Granted {amount} extra credits to {user}; they now have {balance}.",
        ),
        "zh": "已向 {user} 发放 {amount} 点额外额度；现有 {balance} 点。",
    },
    # --- WebUI ---------------------------------------------------------------------------
    "webui.error": {
        "en": "The WebUI at {url} failed on {path}.",
        "zh": "位于 {url} 的 WebUI 在 {path} 上出错。",
    },
    "webui.unreachable": {
        "en": "Could not connect to the WebUI at {url} — is it running, and is WEBUI_URLS right?",
        "zh": "无法连接到 {url} 的 WebUI——它在运行吗？WEBUI_URLS 设置正确吗？",
    },
    "webui.timeout": {
        "en": "The WebUI at {url} did not answer {path} within {seconds} s — it may be overloaded.",
        "zh": "{url} 的 WebUI 在 {seconds} 秒内没有响应 {path}——它可能负载过高。",
    },
    "webui.auth": {
        "en": "The WebUI at {url} refused our credentials ({detail}) — check WEBUI_AUTH "
        "against its --api-auth.",
        "zh": "{url} 的 WebUI 拒绝了凭据（{detail}）——请检查 WEBUI_AUTH 是否与其 --api-auth 一致。",
    },
    "webui.no_api": {
        "en": "The WebUI at {url} answered 404 on {path} — was it started with --api?",
        "zh": "{url} 的 WebUI 对 {path} 返回 404——启动时加了 --api 吗？",
    },
    "webui.request": {
        "en": "The WebUI at {url} rejected {path} ({status}: {detail}).",
        "zh": "{url} 的 WebUI 拒绝了 {path}（{status}：{detail}）。",
    },
    "webui.sampler_not_found": {
        "en": "The WebUI at {url} does not know that sampler. See /models for the samplers it has.",
        "zh": "{url} 的 WebUI 不认识这个采样器。用 /models 查看可用的采样器。",
    },
    "webui.bad_response": {
        "en": "The WebUI at {url} sent an answer on {path} that is not an image result.",
        "zh": "{url} 的 WebUI 对 {path} 的返回不是图片结果。",
    },
    # --- backends as they really are (flavours, routing, cool-off; issue 9) ---------------
    "webui.empty": {
        "en": "A drawing server answered without any picture (it does that when it runs out of "
        "GPU memory or is interrupted while loading a model).",
        "zh": "绘图服务器没有返回任何图片（显存不足或加载模型时被中断时会这样）。",
    },
    "webui.wrong_model": {
        "en": "A drawing server drew with another checkpoint than the one asked for, so the "
        "picture was not used.",
        "zh": "绘图服务器用了与要求不同的模型作画，所以这张图没有采用。",
    },
    "webui.not_upscaled": {
        "en": "A drawing server returned the picture without upscaling it.",
        "zh": "绘图服务器返回的图片没有被放大。",
    },
    "webui.stalled": {
        "en": "A drawing server made no progress for {seconds} s.",
        "zh": "绘图服务器 {seconds} 秒没有任何进展。",
    },
    # --- backend failures as chat users read them (no hosts, paths or settings; issue 11) ---
    "webui.misconfigured": {
        "en": "The image service is misconfigured; an admin has been told. Please try again later.",
        "zh": "图像服务配置有误，已通知管理员。请稍后再试。",
    },
    "webui.unknown_sampler": {
        "en": "The drawing server does not know that sampler. See /models for the samplers it has.",
        "zh": "绘图服务器不认识这个采样器。用 /models 查看可用的采样器。",
    },
    "webui.rejected": {
        "en": "The drawing server could not draw this request. Try other settings (size, "
        "sampler, model) or a plain /draw.",
        "zh": "绘图服务器无法绘制这个请求。请换一些设置（尺寸、采样器、模型）或直接用 /draw。",
    },
    "webui.out_of_memory": {
        "en": "The drawing server ran out of GPU memory on this job. Try a smaller --size, "
        "fewer --count or --hires off.",
        "zh": "绘图服务器处理这个任务时显存不足。请试试更小的 --size、更少的 --count 或 --hires off。",
    },
    "webui.too_slow": {
        "en": "The drawing server took too long on this job. Try a smaller --size or fewer "
        "--steps, or try again in a while.",
        "zh": "绘图服务器处理这个任务太久了。请试试更小的 --size 或更少的 --steps，或稍后再试。",
    },
    "webui.failed": {
        "en": "The drawing server failed on this job. Please try again in a while.",
        "zh": "绘图服务器处理这个任务时出错。请稍后再试。",
    },
    "queue.job_waiting": {
        "en": "{job} — position {position}, waiting for a drawing server",
        "zh": "{job} —— 第 {position} 位，等待绘图服务器",
    },
    "queue.waiting_no_backend": {
        "en": "Queued (position {position}), but no drawing server is up right now: your job "
        "waits until one comes "
        "back (no start time can be given). Its credits are only held and come back if it "
        "never runs; /cancel returns them now.",
        "zh": "已排队（第 {position} 位），但目前没有可用的绘图服务器：任务会等到服务器恢复（无法估计开始时间）。"
        "额度只是暂时占用，任务没有运行就会退还；用 /cancel 可立即退还。",
    },
    "backends.numbered": {"en": "backend {n}", "zh": "后端 {n}"},
    "route.none": {
        "en": "None of the drawing servers has {missing}. What each one offers:\n{offers}",
        "zh": "没有任何绘图服务器有{missing}。各服务器提供的：\n{offers}",
    },
    "route.none_together": {
        "en": "No single drawing server has {missing} together. What each one offers:\n{offers}",
        "zh": "没有一台绘图服务器同时具备{missing}。各服务器提供的：\n{offers}",
    },
    "route.offer": {"en": "• {backend}: {what}", "zh": "• {backend}：{what}"},
    "route.offer.model": {"en": "checkpoints {names}", "zh": "模型 {names}"},
    "route.offer.sampler": {"en": "samplers {names}", "zh": "采样器 {names}"},
    "route.offer.upscaler": {"en": "upscalers {names}", "zh": "放大器 {names}"},
    "route.offer.lora": {"en": "LoRAs {names}", "zh": "LoRA {names}"},
    "route.missing.model": {"en": "the checkpoint {name!r}", "zh": "模型 {name!r}"},
    "route.missing.sampler": {"en": "the sampler {name!r}", "zh": "采样器 {name!r}"},
    "route.missing.upscaler": {"en": "the upscaler {name!r}", "zh": "放大器 {name!r}"},
    "route.missing.lora": {"en": "the LoRA {name!r}", "zh": "LoRA {name!r}"},
    # operator-facing (the log and `drawbridge backends`; never shown in chat)
    "backends.frozen_all": {
        "en": "backend {backend} refuses to change its settings (--freeze-settings): drawbridge "
        "sends it no override_settings, so its jobs draw with its loaded checkpoint {model} and "
        "its own clip skip and ENSD; jobs naming another checkpoint go to other backends.",
        "zh": "后端 {backend} 禁止修改设置（--freeze-settings）：drawbridge 不向它发送 "
        "override_settings，它的任务使用其已加载的模型 {model} 以及它自己的 clip skip 和 ENSD；"
        "指定其他模型的任务会交给别的后端。",
    },
    "backends.frozen_some": {
        "en": "backend {backend} refuses to change {keys} (--freeze-specific-settings): "
        "drawbridge never overrides those on it.",
        "zh": "后端 {backend} 禁止修改 {keys}（--freeze-specific-settings）：drawbridge 不会在它上面"
        "覆盖这些设置。",
    },
    "backends.line_up": {
        "en": "{name} ({where})  UP  {flavour}  model {model}  {busy}  drawbridge jobs on it: {jobs}",
        "zh": "{name}（{where}）  在线  {flavour}  模型 {model}  {busy}  drawbridge 在其上的任务：{jobs}",
    },
    "backends.line_down": {
        "en": "{name} ({where})  DOWN  {error}  drawbridge jobs on it: {jobs}",
        "zh": "{name}（{where}）  离线  {error}  drawbridge 在其上的任务：{jobs}",
    },
    "backends.idle": {"en": "idle", "zh": "空闲"},
    "backends.busy": {"en": "busy {percent}% ({job})", "zh": "忙碌 {percent}%（{job}）"},
    "backends.catalogue": {
        "en": "  offers {checkpoints}, {samplers}, {upscalers}, {loras}",
        "zh": "  提供 {checkpoints}、{samplers}、{upscalers}、{loras}",
    },
    "backends.count.checkpoints.one": {"en": "{n} checkpoint", "zh": "{n} 个模型"},
    "backends.count.checkpoints.other": {"en": "{n} checkpoints", "zh": "{n} 个模型"},
    "backends.count.samplers.one": {"en": "{n} sampler", "zh": "{n} 个采样器"},
    "backends.count.samplers.other": {"en": "{n} samplers", "zh": "{n} 个采样器"},
    "backends.count.upscalers.one": {"en": "{n} upscaler", "zh": "{n} 个放大器"},
    "backends.count.upscalers.other": {"en": "{n} upscalers", "zh": "{n} 个放大器"},
    "backends.count.loras.one": {"en": "{n} LoRA", "zh": "{n} 个 LoRA"},
    "backends.count.loras.other": {"en": "{n} LoRAs", "zh": "{n} 个 LoRA"},
    "backends.checkpoints": {"en": "  checkpoints: {names}", "zh": "  模型：{names}"},
    "backends.binding.task": {
        "en": "  progress and cancel bound to each job by its task id (force_task_id)",
        "zh": "  进度和取消通过任务 ID（force_task_id）绑定到每个任务",
    },
    "backends.binding.timestamp": {
        "en": "  progress and cancel bound to each job by its job_timestamp (see README: what is "
        "guaranteed per flavour)",
        "zh": "  进度和取消通过 job_timestamp 绑定到任务（见 README：各分支的保证）",
    },
    "backends.cooling.one": {
        "en": "  cooling off for {seconds} s more after {n} failure in a row: {error}",
        "zh": "  连续失败 {n} 次，还要冷却 {seconds} 秒：{error}",
    },
    "backends.cooling.other": {
        "en": "  cooling off for {seconds} s more after {n} failures in a row: {error}",
        "zh": "  连续失败 {n} 次，还要冷却 {seconds} 秒：{error}",
    },
    "backends.failing.one": {
        "en": "  {n} failure in a row (last: {error})",
        "zh": "  连续失败 {n} 次（最近一次：{error}）",
    },
    "backends.failing.other": {
        "en": "  {n} failures in a row (last: {error})",
        "zh": "  连续失败 {n} 次（最近一次：{error}）",
    },
    "backends.state_from": {
        "en": "(failures and cool-off as last written by drawbridge, pid {pid} on {host}, "
        "at {when})",
        "zh": "（失败与冷却状态最后由 {host} 上 pid 为 {pid} 的 drawbridge 写于 {when}）",
    },
    "backends.refreshed": {
        "en": "  rescanned its checkpoint and LoRA folders",
        "zh": "  已重新扫描其模型和 LoRA 文件夹",
    },
    "backends.refresh_failed": {
        "en": "  could not rescan its folders: {error}",
        "zh": "  无法重新扫描其文件夹：{error}",
    },
    "backends.queue.one": {
        "en": "queue: {n} job waiting from {users}",
        "zh": "队列：{n} 个任务在等待，来自{users}",
    },
    "backends.queue.other": {
        "en": "queue: {n} jobs waiting from {users}",
        "zh": "队列：{n} 个任务在等待，来自{users}",
    },
    "backends.users.one": {"en": "{n} user", "zh": " {n} 位用户"},
    "backends.users.other": {"en": "{n} users", "zh": " {n} 位用户"},
    # --- images --------------------------------------------------------------------------
    "image.unreadable": {
        "en": "That picture cannot be used. Please send a PNG, JPEG, WebP or GIF picture.",
        "zh": "这张图片无法使用。请发送 PNG、JPEG、WebP 或 GIF 图片。",
    },
    "image.bad_format": {
        "en": "That file is not a picture I can read. Please send one of: {formats} "
        "(a photo or screenshot works).",
        "zh": "这个文件不是我能读取的图片。请发送以下格式之一：{formats}（照片或截图都可以）。",
    },
    "image.too_large_file": {
        "en": "That file is {size}; the limit is {limit}. Please send a smaller picture "
        "(sending it as a photo rather than as a file makes it smaller).",
        "zh": "这个文件有 {size}，上限是 {limit}。请发送小一些的图片（以照片而不是文件的方式发送会更小）。",
    },
    "image.too_many_pixels": {
        "en": "That picture has too many pixels to open safely (the limit is {limit} megapixels). "
        "Please send a smaller copy, or send it as a photo rather than as a file.",
        "zh": "这张图片像素太多，无法安全打开（上限 {limit} 百万像素）。"
        "请发送缩小后的版本，或以照片而不是文件的方式发送。",
    },
    "image.corrupt": {
        "en": "That picture could not be read: the file looks damaged or incomplete. "
        "Please send it again, ideally as a PNG or JPEG.",
        "zh": "无法读取这张图片：文件似乎已损坏或不完整。请重新发送，最好是 PNG 或 JPEG。",
    },
    "image.zero_size": {
        "en": "That picture is empty (it has no width or no height). "
        "Please send a normal photo or screenshot.",
        "zh": "这张图片是空的（宽度或高度为零）。请发送一张正常的照片或截图。",
    },
    "image.bad_aspect": {
        "en": "A {width}×{height} picture is too long and thin to work with. Please crop it so "
        "that one side is at most {max_ratio} times the other, and send it again.",
        "zh": "{width}×{height} 的图片太细长了，无法处理。请裁剪到长边不超过短边的 {max_ratio} 倍后重新发送。",
    },
    "image.too_small": {
        "en": "A {width}×{height} picture is too small to work with. Please send one at least "
        "{min_side} pixels on each side.",
        "zh": "{width}×{height} 的图片太小了，无法处理。请发送每边至少 {min_side} 像素的图片。",
    },
    "image.expired": {
        "en": "That picture is no longer stored (older pictures are cleared out). "
        "Please send it again.",
        "zh": "这张图片已不再保存（较早的图片会被清理）。请重新发送。",
    },
    "mask.empty": {
        "en": "I could not find anything marked to change. Paint over the part to change in a "
        "bright colour and send it back as a reply, or send a black-and-white mask "
        "(white = change).",
        "zh": "没有找到标记为要修改的部分。请用鲜艳的颜色涂抹要修改的区域并以回复的方式发回，"
        "或发送一张黑白蒙版（白色 = 修改）。",
    },
    "mask.full": {
        "en": "The mask covers the whole picture, so there is nothing to keep. Paint over only "
        "the part to change (or use img2img to redraw everything).",
        "zh": "蒙版覆盖了整张图片，没有需要保留的部分。请只涂抹要修改的区域（或用图生图重绘整张图）。",
    },
    "mask.unrelated": {
        "en": "That second picture does not look like the first one painted over. Send one of: "
        "the same picture with the part to change painted in a bright colour (not cropped); "
        "a black-and-white mask, white = change; or a PNG with the part to change erased "
        "(transparent). To redraw everything, use img2img instead.",
        "zh": "第二张图片看起来不是在第一张上涂抹的结果。请发送以下之一：同一张图片（不要裁剪），"
        "用鲜艳的颜色涂抹要修改的区域；一张黑白蒙版，白色 = 修改；或一张把要修改的区域擦除"
        "（透明）的 PNG。如需重绘整张图，请改用图生图。",
    },
    "mask.used_explicit": {
        "en": "Using the white area of your mask, {percent}% of the picture, as the area to change.",
        "zh": "使用蒙版中的白色区域（占图片的 {percent}%）作为修改区域。",
    },
    "mask.used_alpha": {
        "en": "Using the transparent area, {percent}% of the picture, as the area to change.",
        "zh": "使用透明区域（占图片的 {percent}%）作为修改区域。",
    },
    "mask.used_painted": {
        "en": "Using the painted area, {percent}% of the picture, as the area to change.",
        "zh": "使用涂抹的区域（占图片的 {percent}%）作为修改区域。",
    },
    # --- Telegram adapter -----------------------------------------------------------------
    "telegram.cmd.start": {"en": "What this bot does", "zh": "这个机器人能做什么"},
    "telegram.cmd.help": {"en": "Every /draw option", "zh": "所有 /draw 选项"},
    "telegram.cmd.draw": {
        "en": "Draw a picture: /draw PROMPT [options]",
        "zh": "画图：/draw 提示词 [选项]",
    },
    "telegram.cmd.cancel": {"en": "Cancel your newest job", "zh": "取消你最新的任务"},
    "telegram.cmd.queue": {"en": "The queue and your jobs", "zh": "队列和你的任务"},
    "telegram.cmd.quota": {"en": "Your credits", "zh": "你的额度"},
    "telegram.cmd.models": {"en": "Checkpoints, samplers and LoRAs", "zh": "模型、采样器和 LoRA"},
    "telegram.cmd.settings": {
        "en": "Your default preset, size, steps, negative",
        "zh": "你的默认预设、尺寸、步数、反向提示词",
    },
    "telegram.welcome": {
        "en": "Hi {name}! I draw pictures with Stable Diffusion.\n"
        "• /draw a red fox in the snow — describe a picture (in a private chat, just write it).\n"
        "• Send a photo with a /draw caption, or reply /draw to a picture, to redraw it.\n"
        "• Reply to a picture with a painted-over copy, a black-and-white mask or a PNG with "
        "a transparent area to change only that part.\n"
        "• Buttons under a result: 🔁 new seed, 🎨 variations, ⬆️ upscale, 📄 the original PNG.\n"
        "/help lists every option; /quota shows your credits.",
        "zh": "你好，{name}！我用 Stable Diffusion 画图。\n"
        "• /draw a red fox in the snow —— 描述一张图（私聊中直接发送描述即可）。\n"
        "• 发送带 /draw 说明的照片，或用 /draw 回复一张图片，即可重绘它。\n"
        "• 用涂抹过的副本、黑白蒙版或带透明区域的 PNG 回复一张图片，只修改那一部分。\n"
        "• 结果下方的按钮：🔁 换种子、🎨 变体、⬆️ 放大、📄 原始 PNG。\n"
        "/help 列出所有选项；/quota 查看你的额度。",
    },
    "telegram.help_commands": {
        "en": "Commands: /draw, /cancel [job], /queue, /quota, /models, /settings, /help.",
        "zh": "命令：/draw、/cancel [任务]、/queue、/quota、/models、/settings、/help。",
    },
    "telegram.help_images": {
        "en": "Pictures: a photo or image file with a /draw caption redraws it (img2img); "
        "replying to a picture with another one changes only the marked part (inpaint).",
        "zh": "图片：带 /draw 说明的照片或图片文件会被重绘（图生图）；"
        "用另一张图片回复一张图片，只修改标记的部分（局部重绘）。",
    },
    "telegram.received": {"en": "⏳ Got it…", "zh": "⏳ 收到…"},
    "telegram.photo_needs_prompt": {
        "en": "What should I draw from this picture? Send it with a caption, e.g. "
        "/draw a castle at dusk, or reply to it with /draw and a description.",
        "zh": "要用这张图片画什么？请附上说明再发送，例如 /draw a castle at dusk，"
        "或用 /draw 加描述回复这张图片。",
    },
    "telegram.download_failed": {
        "en": "I could not download that picture from Telegram. Please send it again.",
        "zh": "无法从 Telegram 下载这张图片。请重新发送。",
    },
    "telegram.chat_not_allowed": {
        "en": "This bot is not enabled in this chat. Ask its operator to add the chat to "
        "TELEGRAM_ALLOWED_CHATS.",
        "zh": "此聊天未启用这个机器人。请让管理员把本聊天加入 TELEGRAM_ALLOWED_CHATS。",
    },
    "telegram.btn.reroll": {"en": "🔁 Reroll", "zh": "🔁 重新生成"},
    "telegram.btn.variations": {"en": "🎨 Variations", "zh": "🎨 变体"},
    "telegram.btn.upscale": {"en": "⬆️ Upscale", "zh": "⬆️ 放大"},
    "telegram.btn.original": {"en": "📄 Original", "zh": "📄 原图"},
    "telegram.btn.cancel": {"en": "✖ Cancel", "zh": "✖ 取消"},
    "telegram.album_buttons": {
        "en": Plural(
            "count",
            one="Buttons for the {count} picture above:",
            other="Buttons for the {count} pictures above (#1 is the first):",
        ),
        "zh": "上面 {count} 张图片的按钮（#1 是第一张）：",
    },
    "telegram.cancelled_reply": {
        "en": Plural(
            "credits",
            one="Cancelled job {job}. Your {credits} credit was returned.",
            other="Cancelled job {job}. Your {credits} credits were returned.",
        ),
        "zh": "已取消任务 {job}。已退还 {credits} 点额度。",
    },
    "telegram.models_checkpoints": {"en": "Checkpoints (--model):", "zh": "模型（--model）："},
    "telegram.models_samplers": {"en": "Samplers (--sampler):", "zh": "采样器（--sampler）："},
    "telegram.models_page": {"en": "Page {page} of {pages}", "zh": "第 {page}/{pages} 页"},
    "telegram.settings_usage": {
        "en": "Tap a button, or type e.g. /settings size 640x832, /settings steps 30, "
        "/settings negative blurry, text; favourites: /settings --lora add_detail:0.6 "
        "--style cinematic (--lora none, --style none clear them); "
        "/settings reset clears everything.",
        "zh": "点按钮，或输入例如 /settings size 640x832、/settings steps 30、"
        "/settings negative blurry, text；常用项：/settings --lora add_detail:0.6 "
        "--style cinematic（--lora none、--style none 清除）；/settings reset 清除全部。",
    },
    "telegram.settings_unknown": {
        "en": "I can set preset, size, steps, negative, lora or style, e.g. /settings steps 30 "
        "or /settings --lora add_detail:0.6.",
        "zh": "可以设置 preset、size、steps、negative、lora 或 style，例如 /settings steps 30 "
        "或 /settings --lora add_detail:0.6。",
    },
    "telegram.settings_not_yours": {
        "en": "These are someone else's settings; send /settings to change yours.",
        "zh": "这是别人的设置；发送 /settings 修改你自己的。",
    },
    "telegram.btn.preset_default": {"en": "default", "zh": "默认"},
    "telegram.btn.from_preset": {"en": "from preset", "zh": "用预设"},
    "telegram.btn.no_negative": {"en": "no negative", "zh": "不用反向词"},
    "telegram.btn.reset": {"en": "Reset all", "zh": "全部重置"},
    "mask.needs_init": {
        "en": "A mask needs a picture to go with it: send the picture with /draw, then reply to it with the mask.",
        "zh": "蒙版需要配合一张图片：先用 /draw 发送图片，再用蒙版回复它。",
    },
    # --- Discord adapter ------------------------------------------------------------------
    # command and option names: "en" is the name Discord registers, "zh" its localisation
    "discord.cmd.draw.name": {"en": "draw", "zh": "画图"},
    "discord.cmd.draw": {"en": "Draw a picture from a description", "zh": "根据描述画一张图"},
    "discord.cmd.inpaint.name": {"en": "inpaint", "zh": "局部重绘"},
    "discord.cmd.inpaint": {
        "en": "Repaint part of a picture: the picture, a mask (white = change), what to draw",
        "zh": "重绘图片的一部分：图片、蒙版（白色 = 修改）、要画的内容",
    },
    "discord.cmd.cancel.name": {"en": "cancel", "zh": "取消"},
    "discord.cmd.cancel": {
        "en": "Cancel your newest job (or the one named)",
        "zh": "取消你最新的任务（或指定的任务）",
    },
    "discord.cmd.queue.name": {"en": "queue", "zh": "队列"},
    "discord.cmd.queue": {"en": "The queue and your jobs", "zh": "队列和你的任务"},
    "discord.cmd.quota.name": {"en": "quota", "zh": "额度"},
    "discord.cmd.quota": {"en": "Your credits", "zh": "你的额度"},
    "discord.cmd.models.name": {"en": "models", "zh": "模型"},
    "discord.cmd.models": {"en": "Checkpoints, samplers and LoRAs", "zh": "模型、采样器和 LoRA"},
    "discord.cmd.settings.name": {"en": "settings", "zh": "设置"},
    "discord.cmd.settings": {
        "en": "Your defaults for /draw (without options: show them)",
        "zh": "你的 /draw 默认设置（不带选项：查看）",
    },
    "discord.cmd.help.name": {"en": "help", "zh": "帮助"},
    "discord.cmd.help": {
        "en": "Every /draw option and what the bot does",
        "zh": "所有 /draw 选项和机器人的用法",
    },
    "discord.cmd.use_as_init.name": {"en": "Use as init image", "zh": "用作初始图片"},
    "discord.opt.prompt": {"en": "prompt", "zh": "提示词"},
    "discord.opt.negative": {"en": "negative", "zh": "反向提示词"},
    "discord.opt.ar": {"en": "ar", "zh": "宽高比"},
    "discord.opt.size": {"en": "size", "zh": "尺寸"},
    "discord.opt.steps": {"en": "steps", "zh": "步数"},
    "discord.opt.cfg": {"en": "cfg", "zh": "cfg"},
    "discord.opt.seed": {"en": "seed", "zh": "种子"},
    "discord.opt.sampler": {"en": "sampler", "zh": "采样器"},
    "discord.opt.model": {"en": "model", "zh": "模型"},
    "discord.opt.count": {"en": "count", "zh": "数量"},
    "discord.opt.init_image": {"en": "init_image", "zh": "初始图片"},
    "discord.opt.mask": {"en": "mask", "zh": "蒙版"},
    "discord.opt.strength": {"en": "strength", "zh": "重绘幅度"},
    "discord.opt.hires": {"en": "hires", "zh": "高清修复"},
    "discord.opt.preset": {"en": "preset", "zh": "预设"},
    "discord.opt.invert": {"en": "invert", "zh": "反转蒙版"},
    "discord.opt.fill": {"en": "fill", "zh": "填充方式"},
    "discord.opt.only_masked": {"en": "only_masked", "zh": "仅重绘蒙版"},
    "discord.opt.image": {"en": "image", "zh": "图片"},
    "discord.opt.job": {"en": "job", "zh": "任务"},
    "discord.opt.reset": {"en": "reset", "zh": "重置"},
    "discord.opt.prompt.desc": {"en": "What to draw", "zh": "要画的内容"},
    "discord.opt.size.desc": {"en": "Picture size (width×height)", "zh": "图片尺寸（宽×高）"},
    "discord.opt.init_image.desc": {
        "en": "A picture to start from (img2img)",
        "zh": "作为起点的图片（图生图）",
    },
    "discord.opt.mask.desc": {
        "en": "What to change: a mask (white = change), a painted-over copy or a transparent PNG",
        "zh": "要修改的部分：蒙版（白色 = 修改）、涂抹过的副本或带透明区域的 PNG",
    },
    "discord.opt.image.desc": {"en": "The picture to change", "zh": "要修改的图片"},
    "discord.opt.job.desc": {
        "en": "Job id (default: your newest job)",
        "zh": "任务编号（默认：你最新的任务）",
    },
    "discord.opt.reset.desc": {
        "en": "Forget all your defaults",
        "zh": "清除你的所有默认设置",
    },
    # messages
    "discord.received": {"en": "⏳ Got it…", "zh": "⏳ 收到…"},
    "discord.dms_off": {
        "en": "I don't take requests in direct messages here. Please use me in a server channel.",
        "zh": "这里不接受私信请求。请在服务器频道中使用我。",
    },
    "discord.channel_not_allowed": {
        "en": "I'm not enabled in this channel. Please use one of the channels set up for me "
        "(the operator lists them in DISCORD_ALLOWED_CHANNELS).",
        "zh": "此频道未启用本机器人。请使用为我设置的频道（由管理员在 DISCORD_ALLOWED_CHANNELS 中列出）。",
    },
    "discord.nsfw_only": {
        "en": "I only draw in age-restricted (NSFW) channels here. Please use one of those.",
        "zh": "在这里我只在年龄限制（NSFW）频道中画图。请到那些频道使用。",
    },
    "discord.download_failed": {
        "en": "I could not download that picture from Discord. Please send it again.",
        "zh": "无法从 Discord 下载这张图片。请重新发送。",
    },
    "discord.file_too_large": {
        "en": "That file is {size}; the limit is {limit}. Please send a smaller picture.",
        "zh": "这个文件有 {size}，上限是 {limit}。请发送小一些的图片。",
    },
    "discord.no_picture": {
        "en": "That message has no picture. Use “Use as init image” on a message with an image "
        "attached.",
        "zh": "这条消息没有图片。请在带图片的消息上使用“用作初始图片”。",
    },
    "discord.modal_title": {"en": "Draw from this picture", "zh": "用这张图片画图"},
    "discord.modal_prompt": {"en": "Prompt and options", "zh": "提示词和选项"},
    "discord.modal_placeholder": {
        "en": "a castle at dusk --strength 0.6",
        "zh": "黄昏的城堡 --strength 0.6",
    },
    "discord.cancelled_reply": {
        "en": Plural(
            "credits",
            one="Cancelled job {job}. Your {credits} credit was returned.",
            other="Cancelled job {job}. Your {credits} credits were returned.",
        ),
        "zh": "已取消任务 {job}。已退还 {credits} 点额度。",
    },
    "discord.models_checkpoints": {"en": "Checkpoints (model):", "zh": "模型（model）："},
    "discord.models_samplers": {"en": "Samplers (sampler):", "zh": "采样器（sampler）："},
    "discord.settings_usage": {
        "en": "Change them with /settings size, steps, negative or preset (negative “-” = none), "
        "favourites with loras and styles (“none” = none); /settings reset forgets them all.",
        "zh": "用 /settings 的 size、steps、negative 或 preset 修改（negative 填 “-” 表示不用），"
        "常用项用 loras 和 styles（填 “none” 表示不用）；/settings reset 清除全部。",
    },
    "discord.help_commands": {
        "en": "Commands: /draw, /inpaint, /cancel, /queue, /quota, /models, /settings, /help.",
        "zh": "命令：/draw、/inpaint、/cancel、/queue、/quota、/models、/settings、/help。",
    },
    "discord.help_images": {
        "en": "Pictures: /draw with init_image redraws a picture (img2img); with init_image and "
        "mask only the marked part (inpaint). Reply to one of my results with a painted-over "
        "copy or a mask to change part of it, or with words (and options) to redraw it. On any "
        "message with a picture: Apps → “Use as init image”.",
        "zh": "图片：/draw 带 init_image 会重绘图片（图生图）；同时带 init_image 和 mask 只修改标记"
        "的部分（局部重绘）。回复我的结果并附上涂抹过的副本或蒙版，可以只修改一部分；只回复文字"
        "（和选项）则重绘整张图。在任何带图片的消息上：应用 → “用作初始图片”。",
    },
    "discord.help_text_options": {
        "en": "In replies and the “Use as init image” box, options are written as text:",
        "zh": "在回复和“用作初始图片”的输入框中，选项以文字形式书写：",
    },
    "discord.btn.reroll": {"en": "Reroll", "zh": "重新生成"},
    "discord.btn.variations": {"en": "Variations", "zh": "变体"},
    "discord.btn.upscale": {"en": "Upscale", "zh": "放大"},
    "discord.btn.delete": {"en": "Delete", "zh": "删除"},
    "discord.btn.cancel": {"en": "Cancel", "zh": "取消"},
    "discord.embed.seed": {"en": "Seed", "zh": "种子"},
    "discord.embed.size": {"en": "Size", "zh": "尺寸"},
    "discord.embed.model": {"en": "Model", "zh": "模型"},
    "discord.embed.time": {"en": "Time", "zh": "用时"},
    "discord.embed.job": {"en": "job {job}", "zh": "任务 {job}"},
    "discord.reencoded_lossless": {
        "en": "Re-encoded as lossless WebP (the same pixels) to fit Discord's {limit} upload limit.",
        "zh": "为符合 Discord 的 {limit} 上传限制，已重新编码为无损 WebP（像素完全相同）。",
    },
    "discord.reencoded_lossy": {
        "en": "Re-encoded as WebP at quality {quality} to fit Discord's {limit} upload limit; "
        "fine detail may differ from the original.",
        "zh": "为符合 Discord 的 {limit} 上传限制，已重新编码为质量 {quality} 的 WebP；"
        "细节可能与原图略有不同。",
    },
    "discord.reencoded_smaller": {
        "en": "Scaled down to {width}×{height} and re-encoded as WebP to fit Discord's {limit} "
        "upload limit.",
        "zh": "为符合 Discord 的 {limit} 上传限制，已缩小到 {width}×{height} 并重新编码为 WebP。",
    },
    "discord.result_ready": {
        "en": "{mention}, your picture is ready.",
        "zh": "{mention}，你的图片好了。",
    },
    "discord.done_below": {
        "en": "Done — the result is in the reply below.",
        "zh": "完成——结果在下方的回复中。",
    },
    # --- /queue, /settings and /models, shared by the adapters ---
    "queue.yours": {"en": "Your jobs:", "zh": "你的任务："},
    "queue.job_running": {"en": "{job} — drawing now", "zh": "{job} —— 正在绘制"},
    "queue.job_queued": {
        "en": "{job} — position {position}, starting in about {eta}",
        "zh": "{job} —— 第 {position} 位，大约 {eta} 后开始",
    },
    "settings.title": {"en": "Your defaults for /draw:", "zh": "你的 /draw 默认设置："},
    "settings.preset": {"en": "Preset: {value}", "zh": "预设：{value}"},
    "settings.size": {"en": "Size: {value}", "zh": "尺寸：{value}"},
    "settings.steps": {"en": "Steps: {value}", "zh": "步数：{value}"},
    "settings.negative": {"en": "Negative prompt: {value}", "zh": "反向提示词：{value}"},
    "settings.empty": {"en": "none", "zh": "无"},
    "settings.from_preset": {"en": "preset's ({value})", "zh": "预设值（{value}）"},
    "settings.saved": {"en": "Saved.", "zh": "已保存。"},
    "models.loras": {
        "en": "LoRAs (write <lora:NAME:0.8> in the prompt):",
        "zh": "LoRA（在提示词中写 <lora:名称:0.8>）：",
    },
    "models.none": {
        "en": "No drawing server has answered yet; try /models again in a minute.",
        "zh": "还没有绘图服务器响应；请一分钟后再试 /models。",
    },
    # --- CLI -----------------------------------------------------------------------------
    "cli.no_tokens": {
        "en": "No chat platform is configured. Set DISCORD_TOKEN and/or TELEGRAM_TOKEN "
        "(in the environment or in .env; see .env.example), then run again.",
        "zh": "没有配置聊天平台。请设置 DISCORD_TOKEN 和/或 TELEGRAM_TOKEN（环境变量或 .env，"
        "参见 .env.example），然后重新运行。",
    },
    # --- database at start, `drawbridge db …` (operator-facing; never shown in chat) ---
    "db.unreachable": {
        "en": "Could not reach the database at {where} ({detail}; waited {waited:.0f} s) — "
        "is it running, and are the host and port in DATABASE_URL right? "
        "DATABASE_CONNECT_TIMEOUT sets how long drawbridge waits at start.",
        "zh": "无法连接数据库 {where}（{detail}；已等待 {waited:.0f} 秒）——它在运行吗？"
        "DATABASE_URL 中的主机和端口对吗？DATABASE_CONNECT_TIMEOUT 设置启动时等待多久。",
    },
    "db.starting": {
        "en": "The database at {where} is not accepting connections yet ({detail}; waited "
        "{waited:.0f} s) — wait for it to finish starting, or raise DATABASE_CONNECT_TIMEOUT.",
        "zh": "数据库 {where} 还不接受连接（{detail}；已等待 {waited:.0f} 秒）——请等它启动完成，"
        "或调大 DATABASE_CONNECT_TIMEOUT。",
    },
    "db.auth": {
        "en": "The database at {where} refused user {user!r} ({detail}) — check the user and "
        "password in DATABASE_URL (or PGPASSWORD).",
        "zh": "数据库 {where} 拒绝了用户 {user!r}（{detail}）——请检查 DATABASE_URL（或 "
        "PGPASSWORD）中的用户名和密码。",
    },
    "db.no_database": {
        "en": "The database named in DATABASE_URL does not exist at {where} ({detail}) — "
        "create it (createdb NAME) or correct the name.",
        "zh": "DATABASE_URL 中的数据库在 {where} 上不存在（{detail}）——请创建它（createdb 名称）"
        "或改正名称。",
    },
    "db.no_permission": {
        "en": "The database user {user!r} may not create drawbridge's tables at {where} "
        "({detail}) — use the database's owner, or GRANT CREATE ON SCHEMA public TO that user.",
        "zh": "数据库用户 {user!r} 无权在 {where} 创建 drawbridge 的表（{detail}）——请使用数据库"
        "所有者，或执行 GRANT CREATE ON SCHEMA public TO 该用户。",
    },
    "db.no_driver": {
        "en": "DATABASE_URL asks for the database driver {detail}, which is not installed — "
        "write postgresql://user:password@host/dbname (asyncpg, installed with drawbridge) "
        "or sqlite:///path/drawbridge.db.",
        "zh": "DATABASE_URL 要求的数据库驱动 {detail} 没有安装——请写成 "
        "postgresql://用户:密码@主机/库名（drawbridge 自带 asyncpg）或 sqlite:///路径/drawbridge.db。",
    },
    "db.sqlite_path": {
        "en": "Cannot use the SQLite database {where} ({detail}) — set DATA_DIR (or "
        "DATABASE_URL) to a folder drawbridge may write to; in Docker that is the /data volume.",
        "zh": "无法使用 SQLite 数据库 {where}（{detail}）——请把 DATA_DIR（或 DATABASE_URL）"
        "设为 drawbridge 可写的文件夹；在 Docker 中是 /data 卷。",
    },
    "http.cannot_listen": {
        "en": "Cannot serve /healthz and /metrics on HTTP_LISTEN={listen} ({detail}) — choose a "
        "free port (e.g. HTTP_LISTEN=127.0.0.1:9090), or HTTP_LISTEN=off to run without them.",
        "zh": "无法在 HTTP_LISTEN={listen} 上提供 /healthz 和 /metrics（{detail}）——请换一个空闲端口"
        "（例如 HTTP_LISTEN=127.0.0.1:9090），或设 HTTP_LISTEN=off 不启用它们。",
    },
    "db.failed": {
        "en": "The database at {where} failed: {detail}. Check its log; drawbridge changed "
        "nothing that this error interrupted.",
        "zh": "数据库 {where} 出错：{detail}。请查看数据库日志；被此错误中断的操作没有生效。",
    },
    "db.ok": {"en": "database ok: {where}", "zh": "数据库正常：{where}"},
    "db.backup_done": {
        "en": "backed up {where} to {path} ({size}, jobs in it: {jobs})",
        "zh": "已将 {where} 备份到 {path}（{size}，其中任务数：{jobs}）",
    },
    "db.backup_exists": {
        "en": "{path} already exists; name a new file (backups never overwrite one).",
        "zh": "{path} 已存在；请换一个新文件名（备份从不覆盖已有文件）。",
    },
    "db.backup_missing": {
        "en": "There is no SQLite database at {path} to back up — check DATABASE_URL / DATA_DIR.",
        "zh": "{path} 处没有可备份的 SQLite 数据库——请检查 DATABASE_URL / DATA_DIR。",
    },
    "db.backup_failed": {
        "en": "The backup to {path} failed ({detail}); nothing was written.",
        "zh": "备份到 {path} 失败（{detail}）；没有写入任何文件。",
    },
    "db.backup_postgres": {
        "en": "drawbridge db backup copies SQLite databases. For PostgreSQL use pg_dump, which "
        "is consistent while the bot runs: pg_dump --format=custom --file {path} '{url}' "
        "(the password comes from PGPASSWORD or ~/.pgpass); restore with pg_restore --clean "
        "--dbname '{url}' {path}.",
        "zh": "drawbridge db backup 只复制 SQLite 数据库。PostgreSQL 请用 pg_dump（机器人运行时也"
        "一致）：pg_dump --format=custom --file {path} '{url}'（密码取自 PGPASSWORD 或 "
        "~/.pgpass）；恢复用 pg_restore --clean --dbname '{url}' {path}。",
    },
    # --- the drawbridge command (operator help; derived from bot.commands) ------------------
    "cli.cmd.run": {
        "en": "start every chat adapter that has a token",
        "zh": "启动所有已设置令牌的聊天适配器",
    },
    "cli.cmd.draw": {
        "en": "draw one job from the terminal (same parser, quota, queue and WebUI client)",
        "zh": "在终端里画一个任务（同样的解析、额度、队列和 WebUI 客户端）",
    },
    "cli.cmd.backends": {
        "en": "health, loaded model and queue of each WebUI backend",
        "zh": "每个 WebUI 后端的状态、已加载模型和队列",
    },
    "cli.cmd.quota": {"en": "show or grant credits", "zh": "查看或发放额度"},
    "cli.cmd.quota.show": {
        "en": "a user's credits (USER is platform:id, or a CLI name)",
        "zh": "某个用户的额度（USER 为 平台:编号，或命令行用户名）",
    },
    "cli.cmd.quota.grant": {
        "en": "give a user N extra credits that survive resets",
        "zh": "给用户 N 个不随每日重置清零的额外额度",
    },
    "cli.cmd.db": {"en": "database maintenance", "zh": "数据库维护"},
    "cli.cmd.db.upgrade": {
        "en": "apply migrations (also done at every start)",
        "zh": "执行数据库迁移（每次启动时也会执行）",
    },
    "cli.cmd.db.check": {
        "en": "connect once and exit 0 if the database answers (the container's healthcheck)",
        "zh": "连接一次数据库，能应答则以 0 退出（容器的健康检查）",
    },
    "cli.cmd.db.backup": {
        "en": "copy the SQLite database to a new FILE, consistently while the bot runs",
        "zh": "把 SQLite 数据库一致地复制到新文件 FILE（机器人运行时也可以）",
    },
    "cli.cmd.dev-webui": {
        "en": "a stand-in SD-WebUI that draws PLACEHOLDER images (no GPU, for trying and tests)",
        "zh": "一个只画占位图的替身 SD-WebUI（无需 GPU，用于试用和测试）",
    },
    # --- storage -------------------------------------------------------------------------
    "storage.unavailable": {
        "en": "The bot cannot reach its database right now. Nothing was charged; "
        "please try again in a minute.",
        "zh": "机器人暂时无法访问数据库。没有扣除额度，请一分钟后重试。",
    },
    "service.restarting": {
        "en": "🔄 drawbridge is restarting right now. Nothing was charged; "
        "please send that again in a minute.",
        "zh": "🔄 drawbridge 正在重启。没有扣除额度，请一分钟后再发送一次。",
    },
    "delivery.reason": {
        "en": "the picture was drawn, but it could not be sent here.",
        "zh": "图片已经画好，但无法发送到这里。",
    },
    "storage.full": {
        "en": "The bot's storage is full, so it cannot take new work. Nothing was charged; "
        "please tell the operator.",
        "zh": "机器人的存储空间已满，暂时无法接收新任务。没有扣除额度，请告知管理员。",
    },
    # --- the platform edge (adapters/kit: outbox, input limits) ----------------------------
    "delivery.failed": {
        "en": Plural(
            "credits",
            one="I could not deliver the picture of job {job}: {platform} could not be reached "
            "for a while. Your {credits} credit was returned; please draw it again.",
            other="I could not deliver the picture of job {job}: {platform} could not be reached "
            "for a while. Your {credits} credits were returned; please draw it again.",
        ),
        "zh": "无法发送任务 {job} 的图片：{platform} 有一段时间无法连接。已退还 {credits} 点额度，"
        "请重新绘制。",
    },
    "delivery.ended": {
        "en": "⚠️ This job has ended: see the message below.",
        "zh": "⚠️ 此任务已结束：请看下方的消息。",
    },
    "queue.drawing": {"en": "Drawing…", "zh": "正在绘制…"},
    "input.slow_down": {
        "en": "You are sending commands faster than I take them. Wait {seconds} s, then try again.",
        "zh": "你发送命令的速度太快了。请等 {seconds} 秒再试。",
    },
    # --- governance: policy, bans, tiers, admin commands and notices (issue 14) ------------
    "policy.refused.word": {
        "en": "This prompt uses a word that is not allowed here, so it was not drawn. Nothing "
        "was charged; please change the prompt.",
        "zh": "这个提示词包含此处不允许的词语，因此没有绘制。没有扣除额度，请修改提示词。",
    },
    "policy.refused.pattern": {
        "en": "This prompt matches a pattern that is not allowed here, so it was not drawn. "
        "Nothing was charged; please change the prompt.",
        "zh": "这个提示词匹配了此处不允许的规则，因此没有绘制。没有扣除额度，请修改提示词。",
    },
    "policy.refused.model": {
        "en": "That model is not allowed here, so nothing was drawn or charged. Pick another "
        "one (/models lists them).",
        "zh": "此处不允许使用该模型，因此没有绘制，也没有扣除额度。请换一个（/models 可查看）。",
    },
    "policy.bad_file": {
        "en": "The policy file cannot be used: {detail}",
        "zh": "无法使用策略文件：{detail}",
    },
    "ban.banned": {
        "en": "You are banned from this bot until {until}.",
        "zh": "你已被禁止使用本机器人，直到 {until}。",
    },
    "tier.show": {"en": "Tier: {tier}", "zh": "等级：{tier}"},
    "tier.too_big": {
        "en": "Your tier ({tier}) allows pictures up to {pixels} pixels. Nothing was charged; "
        "ask for a smaller size.",
        "zh": "你的等级（{tier}）最多允许 {pixels} 像素的图片。没有扣除额度，请选择更小的尺寸。",
    },
    "tier.too_many_steps": {
        "en": Plural(
            "steps",
            one="Your tier ({tier}) allows at most {steps} step. Nothing was charged; ask for "
            "fewer.",
            other="Your tier ({tier}) allows at most {steps} steps. Nothing was charged; ask for "
            "fewer.",
        ),
        "zh": "你的等级（{tier}）最多允许 {steps} 步。没有扣除额度，请减少步数。",
    },
    "tier.too_many_images": {
        "en": Plural(
            "images",
            one="Your tier ({tier}) allows {images} picture per request. Nothing was charged; "
            "ask for one.",
            other="Your tier ({tier}) allows at most {images} pictures per request. Nothing was "
            "charged; ask for fewer.",
        ),
        "zh": "你的等级（{tier}）每次最多允许 {images} 张图片。没有扣除额度，请减少数量。",
    },
    "tier.model": {
        "en": "Your tier ({tier}) cannot use that model. Nothing was charged; pick another one.",
        "zh": "你的等级（{tier}）不能使用该模型。没有扣除额度，请换一个。",
    },
    "tier.preset": {
        "en": "Your tier ({tier}) cannot use that preset. Nothing was charged; pick another one.",
        "zh": "你的等级（{tier}）不能使用该预设。没有扣除额度，请换一个。",
    },
    "admin.paused": {
        "en": "Drawing is paused for now ({reason}). Nothing was charged; please try again later.",
        "zh": "绘制暂时暂停（{reason}）。没有扣除额度，请稍后再试。",
    },
    "admin.refused": {
        "en": "Only the bot's admins can use /admin.",
        "zh": "只有机器人的管理员可以使用 /admin。",
    },
    "admin.usage": {
        "en": "Usage: /admin grant USER N · ban USER [DAYS] [REASON] · unban USER · "
        "pause [REASON] · resume · drain BACKEND · undrain BACKEND · queue · cancel JOB · "
        "stats · reload",
        "zh": "用法：/admin grant 用户 数量 · ban 用户 [天数] [原因] · unban 用户 · "
        "pause [原因] · resume · drain 后端 · undrain 后端 · queue · cancel 任务 · "
        "stats · reload",
    },
    "admin.granted": {
        "en": Plural(
            "amount",
            one="Gave {user} {amount} credit; they have {balance} now.",
            other="Gave {user} {amount} credits; they have {balance} now.",
        ),
        "zh": "已给 {user} {amount} 点额度；现在共有 {balance} 点。",
    },
    "admin.banned": {
        "en": "{user} is banned until {until}.",
        "zh": "{user} 已被禁止，直到 {until}。",
    },
    "admin.unbanned": {"en": "{user} is no longer banned.", "zh": "{user} 已解除禁止。"},
    "admin.not_banned": {"en": "{user} was not banned.", "zh": "{user} 没有被禁止。"},
    "admin.paused_now": {
        "en": "Paused ({reason}): new jobs are refused, queued ones wait. /admin resume to go on.",
        "zh": "已暂停（{reason}）：新任务会被拒绝，排队中的任务等待。使用 /admin resume 继续。",
    },
    "admin.resumed": {"en": "Resumed: new jobs are taken again.", "zh": "已恢复：重新接收新任务。"},
    "admin.not_paused": {"en": "Drawing was not paused.", "zh": "绘制并未暂停。"},
    "admin.drained": {
        "en": "{backend} finishes its current job and takes no more (/admin undrain to undo).",
        "zh": "{backend} 会完成当前任务，之后不再接收任务（/admin undrain 可撤销）。",
    },
    "admin.undrained": {"en": "{backend} takes jobs again.", "zh": "{backend} 重新接收任务。"},
    "admin.no_backend": {
        "en": "No backend has that name. Backends: {names}.",
        "zh": "没有这个名字的后端。后端有：{names}。",
    },
    "admin.queue_empty": {
        "en": "Nobody has a job queued or running.",
        "zh": "没有排队或运行中的任务。",
    },
    "admin.queue_title.one": {"en": "{n} job:", "zh": "{n} 个任务："},
    "admin.queue_title.other": {"en": "{n} jobs:", "zh": "{n} 个任务："},
    "admin.queue_running": {"en": "running", "zh": "运行中"},
    "admin.cancelled": {
        "en": Plural(
            "credits",
            one="Cancelled job {job}; {credits} credit was returned to its owner.",
            other="Cancelled job {job}; {credits} credits were returned to its owner.",
        ),
        "zh": "已取消任务 {job}；已向其发起者退还 {credits} 点额度。",
    },
    "admin.reloaded": {"en": "Policy reloaded.", "zh": "策略已重新加载。"},
    "notice.backend_down": {
        "en": "⚠️ {backend} is down; jobs go to the other backends.",
        "zh": "⚠️ {backend} 已离线；任务会交给其他后端。",
    },
    "notice.backend_up": {"en": "✅ {backend} is back.", "zh": "✅ {backend} 已恢复。"},
    "notice.paused": {
        "en": "⏸ Drawing was paused ({reason}).",
        "zh": "⏸ 绘制已暂停（{reason}）。",
    },
    "notice.resumed": {"en": "▶️ Drawing was resumed.", "zh": "▶️ 绘制已恢复。"},
    "notice.policy_bad": {
        "en": "⚠️ The policy was not reloaded, the old one stays: {detail}",
        "zh": "⚠️ 策略没有重新加载，仍使用旧策略：{detail}",
    },
    "stats.title": {"en": "📊 Stats", "zh": "📊 统计"},
    "stats.window": {
        "en": "Last {days} d — images: {images}, credits: {credits}, jobs: {jobs}",
        "zh": "最近 {days} 天 — 图片：{images}，额度：{credits}，任务：{jobs}",
    },
    "stats.top": {"en": "Top users (30 d):", "zh": "最活跃用户（30 天）："},
    "stats.top_user": {
        "en": "• {user} — images: {images}, credits: {credits}",
        "zh": "• {user} — 图片：{images}，额度：{credits}",
    },
    "stats.backend_index": {"en": "backend {n}", "zh": "后端 {n}"},
    "stats.backend": {
        "en": "{backend}: busy {share}% of 30 d — jobs: {jobs}, failed: {failures}",
        "zh": "{backend}：30 天内 {share}% 时间忙碌 — 任务：{jobs}，失败：{failures}",
    },
    "stats.median_wait": {"en": "Median wait: {seconds} s", "zh": "等待时间中位数：{seconds} 秒"},
    "telegram.cmd.admin": {"en": "Admin commands (admins only)", "zh": "管理命令（仅限管理员）"},
    "discord.cmd.admin": {"en": "Admin commands", "zh": "管理命令"},
    "discord.cmd.admin.name": {"en": "admin", "zh": "admin"},
    "discord.cmd.admin.grant.name": {"en": "grant", "zh": "grant"},
    "discord.cmd.admin.grant": {"en": "Give a user extra credits", "zh": "给用户额外额度"},
    "discord.cmd.admin.ban.name": {"en": "ban", "zh": "ban"},
    "discord.cmd.admin.ban": {
        "en": "Ban a user (for DAYS, or until unbanned)",
        "zh": "禁止用户（DAYS 天，或直到解除）",
    },
    "discord.cmd.admin.unban.name": {"en": "unban", "zh": "unban"},
    "discord.cmd.admin.unban": {"en": "Lift a ban", "zh": "解除禁止"},
    "discord.cmd.admin.pause.name": {"en": "pause", "zh": "pause"},
    "discord.cmd.admin.pause": {
        "en": "Refuse new jobs with a reason; queued ones wait",
        "zh": "暂停：拒绝新任务并说明原因，排队任务等待",
    },
    "discord.cmd.admin.resume.name": {"en": "resume", "zh": "resume"},
    "discord.cmd.admin.resume": {"en": "Take new jobs again", "zh": "重新接收新任务"},
    "discord.cmd.admin.drain.name": {"en": "drain", "zh": "drain"},
    "discord.cmd.admin.drain": {
        "en": "Let a backend finish its job and take no more",
        "zh": "让后端完成当前任务后不再接收",
    },
    "discord.cmd.admin.undrain.name": {"en": "undrain", "zh": "undrain"},
    "discord.cmd.admin.undrain": {
        "en": "Let a drained backend take jobs again",
        "zh": "让已停止接收的后端重新接收任务",
    },
    "discord.cmd.admin.queue.name": {"en": "queue", "zh": "queue"},
    "discord.cmd.admin.queue": {
        "en": "Everyone's queued and running jobs",
        "zh": "所有人排队和运行中的任务",
    },
    "discord.cmd.admin.cancel.name": {"en": "cancel", "zh": "cancel"},
    "discord.cmd.admin.cancel": {
        "en": "Cancel anyone's job (refunded)",
        "zh": "取消任何人的任务（退还额度）",
    },
    "discord.cmd.admin.stats.name": {"en": "stats", "zh": "stats"},
    "discord.cmd.admin.stats": {
        "en": "Images, credits, users, backends, waits",
        "zh": "图片、额度、用户、后端、等待时间",
    },
    "discord.cmd.admin.reload.name": {"en": "reload", "zh": "reload"},
    "discord.cmd.admin.reload": {"en": "Read the policy file again", "zh": "重新读取策略文件"},
    "discord.opt.user": {"en": "user", "zh": "user"},
    "discord.opt.user.desc": {
        "en": "platform:id, a mention or an id",
        "zh": "平台:编号、提及或编号",
    },
    "discord.opt.amount": {"en": "amount", "zh": "amount"},
    "discord.opt.amount.desc": {"en": "Credits to give", "zh": "要给的额度"},
    "discord.opt.days": {"en": "days", "zh": "days"},
    "discord.opt.days.desc": {
        "en": "For how many days (default: until unbanned)",
        "zh": "多少天（默认：直到解除）",
    },
    "discord.opt.reason": {"en": "reason", "zh": "reason"},
    "discord.opt.reason.desc": {"en": "Why (shown to users)", "zh": "原因（会显示给用户）"},
    "discord.opt.backend": {"en": "backend", "zh": "backend"},
    "discord.opt.backend.desc": {
        "en": "Backend name (WEBUI_NAMES) or number",
        "zh": "后端名称（WEBUI_NAMES）或编号",
    },
    "help.opt.relax": {
        "en": "queue for free behind every job with credits (when relax mode is on)",
        "zh": "免费排队，排在所有使用额度的任务之后（需开启放松模式）",
    },
    "discord.opt.relax": {"en": "relax", "zh": "relax"},
    "discord.opt.relax.desc": {
        "en": "Free, but waits until no job with credits is queued",
        "zh": "免费，但要等到没有使用额度的任务排队时才开始",
    },
    "relax.off": {
        "en": "Relax mode is off on this bot, so --relax cannot be used. Nothing was charged.",
        "zh": "本机器人未开启放松模式，无法使用 --relax。没有扣除额度。",
    },
    "relax.queued": {
        "en": "🐢 Relaxed: free, and it starts only when no job with credits is waiting, so it "
        "may wait a while.",
        "zh": "🐢 放松模式：免费，但只有在没有使用额度的任务等待时才会开始，可能需要等一会儿。",
    },
    "relax.auto": {
        "en": "🐢 Your credits are spent, so this runs relaxed: free, and it starts only when "
        "no job with credits is waiting, so it may wait a while.",
        "zh": "🐢 你的额度已用完，因此以放松模式运行：免费，但只有在没有使用额度的任务等待时才会开始，"
        "可能需要等一会儿。",
    },
    "nsfw.withheld": {
        "en": "The picture was held back: the NSFW check flagged it, and it cannot be shown "
        "here. Your credits were returned; try a different prompt, or an NSFW channel.",
        "zh": "图片被扣留：NSFW 检查标记了它，不能在这里显示。已退还额度；请换个提示词，或在 NSFW "
        "频道中使用。",
    },
    "nsfw.missing": {
        "en": "NSFW_CHECK is on, but its classifier is not installed: pip install "
        "'drawbridge[nsfw]' (or set NSFW_CHECK=off).",
        "zh": "已开启 NSFW_CHECK，但未安装其分类器：pip install 'drawbridge[nsfw]'（或设置 "
        "NSFW_CHECK=off）。",
    },
    "cli.cmd.ban": {
        "en": "ban USER [--days N] [--reason TEXT]: the user's commands get one line, nothing else",
        "zh": "ban 用户 [--days N] [--reason 原因]：该用户的命令只会收到一行提示",
    },
    "cli.cmd.unban": {"en": "lift a ban", "zh": "解除禁止"},
    "cli.cmd.audit": {"en": "the audit of every job", "zh": "所有任务的审计记录"},
    "cli.cmd.audit.export": {
        "en": "write the audit as CSV: FILE [--since DATE] [--user USER]",
        "zh": "将审计记录导出为 CSV：文件 [--since 日期] [--user 用户]",
    },
    "cli.cmd.stats": {
        "en": "images, credits, top users, backends and waits (today, 7 and 30 days)",
        "zh": "图片、额度、活跃用户、后端与等待时间（今天、7 天、30 天）",
    },
    "cli.banned": {
        "en": "{user} is banned until {until}.",
        "zh": "{user} 已被禁止，直到 {until}。",
    },
    "cli.unbanned": {"en": "{user} is no longer banned.", "zh": "{user} 已解除禁止。"},
    "cli.not_banned": {"en": "{user} was not banned.", "zh": "{user} 没有被禁止。"},
    "cli.audit_written": {
        "en": Plural(
            "n", one="wrote {n} audit row to {file}", other="wrote {n} audit rows to {file}"
        ),
        "zh": "已将 {n} 条审计记录写入 {file}",
    },
    # --- create more (issue 15): hires, faces, LoRAs, styles ------------------------------
    "help.opt.hr_scale": {
        "en": "hires factor (turns hires on)",
        "zh": "高清修复倍数（会开启高清修复）",
    },
    "help.opt.hr_denoise": {
        "en": "hires denoising strength (turns hires on)",
        "zh": "高清修复重绘幅度（会开启高清修复）",
    },
    "help.opt.hr_steps": {
        "en": "hires steps, 0 = as many as the first pass (turns hires on)",
        "zh": "高清修复步数，0 表示与第一遍相同（会开启高清修复）",
    },
    "help.opt.hr_upscaler": {
        "en": "hires upscaler, as /models lists them (turns hires on)",
        "zh": "高清修复放大器，见 /models（会开启高清修复）",
    },
    "help.opt.face": {
        "en": "fix faces (ADetailer where installed, else face restoration)",
        "zh": "修复面部（有 ADetailer 时用它，否则用面部修复）",
    },
    "help.opt.lora": {
        "en": "add a LoRA, weight -2 to 2 (default 1); repeat it for more; "
        "none = not your /settings favourites",
        "zh": "添加 LoRA，权重 -2 到 2（默认 1）；可重复使用；none 表示不用 /settings 中的常用 LoRA",
    },
    "help.opt.style": {
        "en": "a style saved in the WebUI; none = not your /settings favourites",
        "zh": "WebUI 中保存的风格；none 表示不用 /settings 中的常用风格",
    },
    "option.accepts_lora": {
        "en": "a LoRA name, optionally with :WEIGHT (e.g. detail:0.7)",
        "zh": "LoRA 名称，可加 :权重（例如 detail:0.7）",
    },
    "discord.opt.hr_scale": {"en": "hr_scale", "zh": "高清倍数"},
    "discord.opt.hr_denoise": {"en": "hr_denoise", "zh": "高清重绘幅度"},
    "discord.opt.hr_steps": {"en": "hr_steps", "zh": "高清步数"},
    "discord.opt.hr_upscaler": {"en": "hr_upscaler", "zh": "高清放大器"},
    "discord.opt.face": {"en": "face", "zh": "修复面部"},
    "discord.opt.lora": {"en": "lora", "zh": "lora"},
    "discord.opt.style": {"en": "style", "zh": "风格"},
    "option.unknown_lora": {
        "en": "There is no LoRA called {name!r}. Did you mean {close}?",
        "zh": "没有名为 {name!r} 的 LoRA。你是不是想用 {close}？",
    },
    "option.unknown_style": {
        "en": "There is no style called {name!r}. Did you mean {close}?",
        "zh": "没有名为 {name!r} 的风格。你是不是想用 {close}？",
    },
    "route.offer.style": {"en": "styles {names}", "zh": "风格 {names}"},
    "route.missing.style": {"en": "the style {name!r}", "zh": "风格 {name!r}"},
    "telegram.btn.zoom15": {"en": "🔍 Zoom out ×1.5", "zh": "🔍 缩小 ×1.5"},
    "telegram.btn.zoom2": {"en": "🔍 ×2", "zh": "🔍 ×2"},
    "telegram.btn.square": {"en": "⬛ Square", "zh": "⬛ 方形"},
    "telegram.btn.pan_left": {"en": "⬅", "zh": "⬅"},
    "telegram.btn.pan_right": {"en": "➡", "zh": "➡"},
    "telegram.btn.pan_up": {"en": "⬆", "zh": "⬆"},
    "telegram.btn.pan_down": {"en": "⬇", "zh": "⬇"},
    "telegram.btn.faces": {"en": "🙂 Fix faces", "zh": "🙂 修复面部"},
    "discord.btn.zoom15": {"en": "Zoom out ×1.5", "zh": "缩小 ×1.5"},
    "discord.btn.zoom2": {"en": "Zoom out ×2", "zh": "缩小 ×2"},
    "discord.btn.square": {"en": "Make square", "zh": "变成方形"},
    "discord.btn.pan_left": {"en": "Pan", "zh": "向左扩展"},
    "discord.btn.pan_right": {"en": "Pan", "zh": "向右扩展"},
    "discord.btn.pan_up": {"en": "Pan", "zh": "向上扩展"},
    "discord.btn.pan_down": {"en": "Pan", "zh": "向下扩展"},
    "discord.btn.faces": {"en": "Fix faces", "zh": "修复面部"},
    "describe.caption": {
        "en": "🔎 {interrogator}: {caption}",
        "zh": "🔎 {interrogator}：{caption}",
    },
    "describe.prompt": {"en": "📝 Its own prompt: {prompt}", "zh": "📝 图片自带的提示词：{prompt}"},
    "describe.negative": {"en": "Negative prompt: {negative}", "zh": "反向提示词：{negative}"},
    "describe.settings": {"en": "⚙️ {settings}", "zh": "⚙️ {settings}"},
    "describe.unavailable": {
        "en": "No drawing server is answering right now, so I cannot describe the picture. "
        "Please try again in a few minutes.",
        "zh": "目前没有可用的绘图服务器，无法描述这张图片。请过几分钟再试。",
    },
    "describe.failed": {
        "en": "The drawing server could not describe this picture. Please try again later.",
        "zh": "绘图服务器无法描述这张图片。请稍后再试。",
    },
    "describe.gone": {
        "en": "This button no longer knows what to draw; use /draw with the text above.",
        "zh": "这个按钮已失效；请用上面的文字发送 /draw。",
    },
    "telegram.describe_needs_picture": {
        "en": "Send /describe as the caption of a picture, or reply to a picture with /describe "
        "(add deepbooru for tags).",
        "zh": "把 /describe 作为图片的说明发送，或用 /describe 回复一张图片（加 deepbooru 得到标签）。",
    },
    "discord.describe_needs_picture": {
        "en": "Attach a picture, or use the message menu “Describe” on one.",
        "zh": "请附上一张图片，或在图片消息的菜单中选择“描述”。",
    },
    "help.opt.control": {
        "en": "ControlNet preprocessor: canny, depth, openpose, lineart, softedge, scribble, tile, "
        "reference",
        "zh": "ControlNet 预处理器（canny、depth、openpose、lineart、softedge、scribble、tile、"
        "reference），由控制图引导",
    },
    "help.opt.control_weight": {"en": "ControlNet weight", "zh": "ControlNet 权重"},
    "help.opt.control_guidance": {
        "en": "ControlNet from START to END of the steps, e.g. 0:0.8",
        "zh": "ControlNet 作用于步数的 START 到 END，例如 0:0.8",
    },
    "option.accepts_span": {
        "en": "START:END between 0 and 1, e.g. 0:0.8",
        "zh": "0 到 1 之间的 START:END，例如 0:0.8",
    },
    "option.needs_control": {
        "en": "{flag} only works together with --control.",
        "zh": "{flag} 只能和 --control 一起使用。",
    },
    "option.control_needs_image": {
        "en": "--control needs a control picture: attach it as control_image on Discord, or on "
        "Telegram send it with /draw as its caption (or reply to it).",
        "zh": "--control 需要一张控制图：在 Discord 上作为 control_image 附上；在 Telegram 上把 "
        "/draw 作为图片说明发送（或回复那张图）。",
    },
    "option.control_image_without_control": {
        "en": "A control picture needs --control NAME (e.g. --control canny).",
        "zh": "控制图需要配合 --control 名称（例如 --control canny）。",
    },
    "control.no_map": {
        "en": "No drawing server can show this control map right now. Please try again later.",
        "zh": "目前没有绘图服务器能显示这张控制图。请稍后再试。",
    },
    "route.offer.control": {"en": "ControlNet {names}", "zh": "ControlNet {names}"},
    "route.missing.control": {
        "en": "ControlNet {name!r} (its preprocessor and model)",
        "zh": "ControlNet {name!r}（其预处理器和模型）",
    },
    "telegram.btn.control_map": {"en": "🦴 Show control map", "zh": "🦴 查看控制图"},
    "discord.btn.control_map": {"en": "Show control map", "zh": "查看控制图"},
    "discord.opt.control": {"en": "control", "zh": "控制"},
    "discord.opt.control_image": {"en": "control_image", "zh": "控制图"},
    "discord.opt.control_image.desc": {
        "en": "The ControlNet picture (with control)",
        "zh": "ControlNet 控制图（配合 control 使用）",
    },
    "discord.opt.more": {"en": "more", "zh": "更多"},
    "discord.opt.more.desc": {
        "en": "More options as text, e.g. --hr-steps 10 --control-weight 0.8",
        "zh": "更多文字选项，例如 --hr-steps 10 --control-weight 0.8",
    },
    "models.embeddings": {
        "en": "Embeddings (write the name in the prompt):",
        "zh": "嵌入（在提示词中写出名称）：",
    },
    "models.styles": {"en": "Styles (--style NAME):", "zh": "风格（--style 名称）："},
    "history.unknown_job": {
        "en": "You have no finished job {job}. /history lists yours.",
        "zh": "你没有已完成的任务 {job}。/history 会列出你的任务。",
    },
    "history.gone": {
        "en": "The pictures of job {job} are no longer kept.",
        "zh": "任务 {job} 的图片已不再保存。",
    },
    "history.empty": {
        "en": "You have no pictures yet. Draw one with /draw.",
        "zh": "你还没有图片。用 /draw 画一张吧。",
    },
    "history.title": {
        "en": "Your pictures, newest first (page {page} of {pages}):",
        "zh": "你的图片，最新的在前（第 {page} 页，共 {pages} 页）：",
    },
    "history.entry": {
        "en": "{n}. {when} · {size} · {prompt}\n    /history {job}",
        "zh": "{n}. {when} · {size} · {prompt}\n    /history {job}",
    },
    "history.private": {
        "en": "I sent your history to our private chat.",
        "zh": "我已把你的历史记录发到私聊中。",
    },
    "telegram.cmd.history": {
        "en": "Your recent pictures (or /history JOB for one)",
        "zh": "你最近的图片（或 /history 任务编号 查看一张）",
    },
    "discord.cmd.history.name": {"en": "history", "zh": "历史"},
    "discord.cmd.history": {
        "en": "Your recent pictures, or one job with its parameters",
        "zh": "你最近的图片，或某个任务及其参数",
    },
    "discord.opt.page": {"en": "page", "zh": "页码"},
    "discord.opt.page.desc": {"en": "Which page (1 = newest)", "zh": "第几页（1 = 最新）"},
    "telegram.btn.draw_this": {"en": "▶ Draw this", "zh": "▶ 画这个"},
    "discord.btn.draw_this": {"en": "Draw this", "zh": "画这个"},
    "telegram.cmd.describe": {
        "en": "Describe a picture (reply to it, or as its caption)",
        "zh": "描述一张图片（回复它，或作为图片说明）",
    },
    "discord.cmd.describe.name": {"en": "describe", "zh": "描述"},
    "discord.cmd.describe": {
        "en": "What the WebUI sees in a picture, and the prompt it carries",
        "zh": "WebUI 从图片中看到的内容，以及图片自带的提示词",
    },
    "discord.cmd.describe_message.name": {"en": "Describe", "zh": "描述"},
    "discord.opt.picture": {"en": "picture", "zh": "图片"},
    "discord.opt.picture.desc": {"en": "The picture to describe", "zh": "要描述的图片"},
    "discord.opt.interrogator": {"en": "interrogator", "zh": "识别方式"},
    "discord.opt.interrogator.desc": {
        "en": "clip (a sentence) or deepbooru (tags)",
        "zh": "clip（一句话）或 deepbooru（标签）",
    },
    # --- /settings favourites (issue 15) -------------------------------------------------
    "settings.loras": {"en": "Favourite LoRAs: {value}", "zh": "常用 LoRA：{value}"},
    "settings.styles": {"en": "Styles: {value}", "zh": "常用风格：{value}"},
    "settings.no_favourites": {"en": "none", "zh": "无"},
    "settings.too_many_loras": {
        "en": Plural(
            "limit",
            one="You can keep {limit} favourite LoRA; you gave {count}. Please pick fewer.",
            other="You can keep up to {limit} favourite LoRAs; you gave {count}. "
            "Please pick fewer.",
        ),
        "zh": "最多可保存 {limit} 个常用 LoRA，你给了 {count} 个。请少选一些。",
    },
    "settings.too_many_styles": {
        "en": Plural(
            "limit",
            one="You can keep {limit} favourite style; you gave {count}. Please pick fewer.",
            other="You can keep up to {limit} favourite styles; you gave {count}. "
            "Please pick fewer.",
        ),
        "zh": "最多可保存 {limit} 个常用风格，你给了 {count} 个。请少选一些。",
    },
    "settings.cannot_check": {
        "en": "No drawing server is reachable to check those names right now, so nothing was "
        "saved. Please try again in a minute.",
        "zh": "现在连不上任何绘图服务器来核对这些名称，所以没有保存。请过一分钟再试。",
    },
    "settings.stray_words": {
        "en": "I did not understand {words!r}: write each setting as a flag, e.g. "
        "/settings --lora add_detail:0.6 --style cinematic.",
        "zh": "看不懂 {words!r}：请把每项设置写成选项，例如 "
        "/settings --lora add_detail:0.6 --style cinematic。",
    },
    "help.opt.fav_loras": {
        "en": "Favourite LoRAs for every /draw: name:weight, commas between; none = no more",
        "zh": "每次 /draw 都用的常用 LoRA：名称:权重，用逗号分隔；none 表示清空",
    },
    "help.opt.fav_styles": {
        "en": "Favourite styles for every /draw, commas between; none = no more",
        "zh": "每次 /draw 都用的常用风格，用逗号分隔；none 表示清空",
    },
    "settings.favourite_gone": {
        "en": "{reason}\n(That is one of your /settings favourites: give this draw its own LoRA "
        "or style, or “none”, or change them in /settings.)",
        "zh": "{reason}\n（这是你在 /settings 中的常用项：为这次绘图指定自己的 LoRA 或风格，"
        "或填 “none”，也可以在 /settings 中修改。）",
    },
    "discord.opt.loras": {"en": "loras", "zh": "常用lora"},
    "discord.opt.styles": {"en": "styles", "zh": "常用风格"},
    # --- issue 16: a burst of /draw from one user in one chat, one status message ----------
    "burst.queued": {
        "en": Plural(
            "count",
            one="⏳ Your {count} job is queued: {jobs} — it starts in about {eta}.",
            other="⏳ Your {count} jobs are queued: {jobs} — the next starts in about {eta}.",
        ),
        "zh": "⏳ 你的 {count} 个任务正在排队：{jobs}——下一个大约 {eta} 后开始。",
    },
    "burst.queued_next": {
        "en": Plural(
            "count",
            one="⏳ Your {count} job is queued: {jobs} — it is next.",
            other="⏳ Your {count} jobs are queued: {jobs} — the next one is up now.",
        ),
        "zh": "⏳ 你的 {count} 个任务正在排队：{jobs}——下一个马上开始。",
    },
    "burst.waiting_no_backend": {
        "en": Plural(
            "count",
            one="⏳ Your {count} job is queued: {jobs}, but no drawing server is up right now: "
            "it waits until one comes back. Its credits are only held; ✖ returns them now.",
            other="⏳ Your {count} jobs are queued: {jobs}, but no drawing server is up right "
            "now: they wait until one comes back. Their credits are only held; ✖ returns them now.",
        ),
        "zh": "⏳ 你的 {count} 个任务正在排队：{jobs}，但现在没有可用的绘图服务器：任务会等到服务器恢复。"
        "额度只是暂时保留；按 ✖ 可立即退还。",
    },
    "telegram.btn.cancel_all": {
        "en": Plural("count", one="✖ Cancel {count} job", other="✖ Cancel all {count}"),
        "zh": "✖ 全部取消（{count} 个）",
    },
}


def normalize_locale(locale: str | None) -> str:
    """Map a platform locale ('zh-CN', 'zh_hans', 'en-US', None) to one of LANGUAGES."""
    if not locale:
        return "en"
    return "zh" if locale.lower().replace("_", "-").startswith("zh") else "en"


class Phrase:
    """Text rendered later, in the reader's language: a parameter that is itself translated."""

    def __init__(self, render: Callable[[str | None], str]) -> None:
        self._render = render

    def render(self, locale: str | None) -> str:
        """The text in `locale`."""
        return self._render(locale)

    def __str__(self) -> str:
        return self._render("en")


def t(locale: str | None, key: str, /, **params: object) -> str:
    """Render catalogue entry `key` in the user's language, falling back to English."""
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    text = entry.get(normalize_locale(locale)) or entry["en"]
    if isinstance(text, Plural):
        text = text.form(params)
    rendered = {k: v.render(locale) if isinstance(v, Phrase) else v for k, v in params.items()}
    try:
        return text.format(**rendered)
    except (KeyError, IndexError, ValueError):
        return text


def tn(locale: str | None, key: str, n: int, /, **params: object) -> str:
    """Entry `key.one` or `key.other` by the count `n` (English has two forms; Chinese none,
    so both of its entries read the same), with `n` among the parameters."""
    return t(locale, f"{key}.{'one' if n == 1 else 'other'}", n=n, **params)
