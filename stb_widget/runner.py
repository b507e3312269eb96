"""``stb-widget run``: one agent, its player source, signals; until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from .agent import Agent
from .config import Config
from .sources.events_socket import EventsSocketSource
from .sources.mpv_ipc import MpvIpcSource, Naming

log = logging.getLogger(__name__)


async def run_agent(config: Config) -> None:
    """Run the agent with the configured source until a stop signal; then shut down cleanly."""
    agent = Agent(config)
    await agent.start()
    source: EventsSocketSource | MpvIpcSource
    try:
        if config.player.source == "events":
            source = EventsSocketSource(config.player.events_socket, agent.feed)
            await source.start()
        else:
            source = MpvIpcSource(config.player.mpv_socket, agent.feed, agent.clock,
                                  config.player.reconnect_max_s,
                                  naming=Naming.from_config(config.player))
    except BaseException:
        await agent.stop()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("agent for box %s started (source %s)", config.box_id, config.player.source)
    source_task = asyncio.create_task(source.run(), name="source")
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait((source_task, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (source_task, stopper):
            task.cancel()
        await asyncio.gather(source_task, stopper, return_exceptions=True)
        await agent.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("agent stopped: %s", agent.stats())
    if source_task.done() and not source_task.cancelled() and source_task.exception():
        raise source_task.exception()  # type: ignore[misc]
