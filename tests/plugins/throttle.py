"""A slow TCP proxy on 127.0.0.1, so a test can kill a backup while its upload is under way."""

from __future__ import annotations

import asyncio
import threading

import pytest


class ThrottledProxy:
    def __init__(self, target_host: str, target_port: int, bytes_per_second: int, chunk: int = 16384) -> None:
        self.target = (target_host, target_port)
        self.rate = bytes_per_second
        self.chunk = chunk
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "ThrottledProxy":
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("throttling proxy did not start")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader, writer) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src, dst, throttle: bool) -> None:
            try:
                while data := await src.read(self.chunk):
                    dst.write(data)
                    await dst.drain()
                    if throttle:
                        await asyncio.sleep(len(data) / self.rate)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    async def _shutdown(self) -> None:
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def throttled_proxy():
    made: list[ThrottledProxy] = []

    def make(target_host: str, target_port: int, bytes_per_second: int) -> ThrottledProxy:
        proxy = ThrottledProxy(target_host, target_port, bytes_per_second).start()
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.stop()
