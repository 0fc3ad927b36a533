"""Transports for pre-encoded requests: HTTP/1.1 keep-alive connections, grpcio generic calls and streams.

A sender re-sends `wire.Template` payloads and checks each answer (`wire.check_*`). In closed loop a
request slot (`owner`) keeps its own connection or stream; in open loop connections come from a
pool per server, one per request in flight. A watchdog fails any request older than `timeout`
(no per-request timer on the hot path) and drops its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from zeroserve.client.perf import load, wire
from zeroserve.client.perf.wire import KIND_CONNECTION, KIND_PROTOCOL, KIND_TIMEOUT, Template, WireFailure


def _parse_head(head: bytes) -> tuple[int, int, int | None, bool]:
    """(status, content length, inference header length or None, close after) from a response head."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise WireFailure(KIND_PROTOCOL, f"not an HTTP/1.1 response: {lines[0][:80]!r}")
    length, header_length, close = None, None, parts[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"inference-header-content-length":
            header_length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding" and value.strip().lower() != b"identity":
            raise WireFailure(KIND_PROTOCOL, f"the answer uses transfer-encoding {value.strip().decode()!r}")
    if length is None:
        raise WireFailure(KIND_PROTOCOL, "the answer has no Content-Length")
    return int(parts[1]), length, header_length, close


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight; `request` returns the raw answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head: tuple[int, int, int | None, bool] | None = None
        self.head_end = 0
        self.waiter: asyncio.Future | None = None
        self.sent_at = 0.0
        self.closed = False
        self.last_head: tuple[bytes, tuple] = (b"", ())

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if not self.buf and self.head is None and self.waiter is not None:
            # fast path: the whole answer in one read, its head the same bytes as the last one's
            end = data.find(b"\r\n\r\n")
            if end > 0 and data[:end] == self.last_head[0]:
                status, length, header_length, close = self.last_head[1]
                if len(data) == end + 4 + length and not close:
                    fast, self.waiter = self.waiter, None
                    if not fast.done():
                        fast.set_result((status, header_length, data[end + 4 :]))
                    return
        self.buf += data
        try:
            if self.head is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > wire.MAX_HEAD_BYTES:
                        raise WireFailure(KIND_PROTOCOL, "the answer's head is too long")
                    return
                head = bytes(self.buf[:end])
                self.head = _parse_head(head)
                self.last_head = (head, self.head)
                self.head_end = end + 4
            status, length, header_length, close = self.head
            if len(self.buf) < self.head_end + length:
                return
            body = bytes(self.buf[self.head_end : self.head_end + length])
            del self.buf[: self.head_end + length]
            self.head = None
        except (WireFailure, ValueError) as exc:
            self.fail(exc if isinstance(exc, WireFailure) else WireFailure(KIND_PROTOCOL, f"bad answer head: {exc}"))
            return
        waiter, self.waiter = self.waiter, None
        if close:
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((status, header_length, body))

    def connection_lost(self, exc) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                WireFailure(KIND_CONNECTION, "the server closed the connection" + (f" ({exc})" if exc else ""))
            )

    def fail(self, exc: WireFailure) -> None:
        """Fail the request in flight and drop the connection (its byte stream can no longer be trusted)."""
        waiter, self.waiter = self.waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def request(self, payload: bytes) -> asyncio.Future:
        """Send one request; the future gets (status, inference header length, body)."""
        self.waiter = fut = asyncio.get_running_loop().create_future()
        self.sent_at = time.monotonic()
        if self.transport is None:
            raise WireFailure(KIND_PROTOCOL, "the connection is not open")
        self.transport.write(payload)
        return fut


async def open_http(host: str, port: int, timeout: float) -> HttpConnection:
    """A new keep-alive connection (WireFailure when it cannot be made within `timeout`)."""
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(loop.create_connection(HttpConnection, host, port), timeout)
    except TimeoutError:
        raise WireFailure(KIND_TIMEOUT, f"no connection to {host}:{port} within {timeout:g} s") from None
    except OSError as exc:
        raise WireFailure(KIND_CONNECTION, f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    return conn


def grpc_failure(exc: Exception) -> WireFailure:
    """A grpcio error as a counted failure: `grpc_<STATUS>` with the server's message."""
    code_of, details_of = getattr(exc, "code", None), getattr(exc, "details", None)  # grpc.RpcError's
    code = code_of() if callable(code_of) else None
    details = details_of() if callable(details_of) else str(exc)
    name = getattr(code, "name", "UNKNOWN")
    if name == "DEADLINE_EXCEEDED":
        return WireFailure(KIND_TIMEOUT, details or "deadline exceeded")
    if name == "UNAVAILABLE":
        return WireFailure(KIND_CONNECTION, details or "unavailable")
    return WireFailure(f"grpc_{name}", (details or name)[:300])


# ---------------------------------------------------------------- senders

SLOTS_PER_CHANNEL = 6  # tritonclient's C++ gRPC client shares a channel among at most 6 clients


class Sender:
    """Re-sends templates to `urls`; counts its own time (sending, checking) into the recorder's window."""

    def __init__(self, urls: list[str], timeout: float, recorder: load.Recorder):
        self.urls = urls
        self.timeout = timeout
        self.recorder = recorder
        self._watchdog: asyncio.Task | None = None

    async def start(self) -> None:
        self._watchdog = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog

    async def _watch(self) -> None:
        period = min(0.5, self.timeout / 4)
        while True:
            await asyncio.sleep(period)
            self.expire(time.monotonic() - self.timeout)

    def expire(self, before: float) -> None:
        """Fail every request sent before `before` (monotonic seconds)."""

    async def send(self, url_index: int, template: Template, owner: int | None) -> None:
        raise NotImplementedError


class HttpSender(Sender):
    """HTTP/1.1 keep-alive: a connection per slot (closed loop) or per request in flight (open loop)."""

    def __init__(self, urls: list[str], timeout: float, recorder: load.Recorder):
        super().__init__(urls, timeout, recorder)
        self.hosts = [(u.rsplit(":", 1)[0].strip("[]"), int(u.rsplit(":", 1)[1])) for u in urls]
        self.owned: dict[int, HttpConnection] = {}
        self.pools: list[list[HttpConnection]] = [[] for _ in urls]
        self.live: set[HttpConnection] = set()

    async def _connect(self, url_index: int) -> HttpConnection:
        conn = await open_http(*self.hosts[url_index], self.timeout)
        self.live.add(conn)
        return conn

    async def send(self, url_index: int, template: Template, owner: int | None) -> None:
        t0 = time.perf_counter()
        if owner is not None:
            conn = self.owned.get(owner)
            if conn is None or conn.closed:
                self.live.discard(conn)
                conn = self.owned[owner] = await self._connect(url_index)
        else:
            pool = self.pools[url_index]
            while pool and pool[-1].closed:
                self.live.discard(pool.pop())
            conn = pool.pop() if pool else await self._connect(url_index)
        fut = conn.request(template.payload)
        t1 = time.perf_counter()
        answer = await fut
        t2 = time.perf_counter()
        wire.check_http(template, answer)
        window = self.recorder.current
        window.send_s += t1 - t0
        window.check_s += time.perf_counter() - t2
        if owner is None and not conn.closed:
            self.pools[url_index].append(conn)

    def expire(self, before: float) -> None:
        for conn in list(self.live):
            if conn.closed:
                self.live.discard(conn)
            elif conn.waiter is not None and conn.sent_at < before:
                conn.fail(WireFailure(KIND_TIMEOUT, f"no answer within {self.timeout:g} s"))

    async def close(self) -> None:
        await super().close()
        for conn in self.live:
            conn.close()
        self.live.clear()


class GrpcSender(Sender):
    """gRPC unary `ModelInfer` through grpcio's generic call: the bytes go out as they are."""

    def __init__(self, urls: list[str], timeout: float, recorder: load.Recorder):
        super().__init__(urls, timeout, recorder)
        self.channels: list = []
        self.calls: dict[tuple[int, int], object] = {}  # (server, connection) -> ModelInfer callable

    def _channel(self, url_index: int, number: int):
        import grpc.aio

        # distinct arguments and a local pool, or grpcio would share one connection among them
        channel = grpc.aio.insecure_channel(
            self.urls[url_index],
            options=[*wire.GRPC_OPTIONS, ("zeroserve.connection", number), ("grpc.use_local_subchannel_pool", 1)],
        )
        self.channels.append(channel)
        return channel

    def _call(self, url_index: int, owner: int | None):
        # as tritonclient's C++ client under perf_analyzer: a connection is shared by at most SLOTS_PER_CHANNEL slots
        key = (url_index, (owner or 0) // SLOTS_PER_CHANNEL)
        call = self.calls.get(key)
        if call is None:
            # no serializers: bytes in, bytes out; a registered method skips per-call method lookup (measured)
            call = self.calls[key] = self._channel(*key).unary_unary(wire.INFER_METHOD, _registered_method=True)
        return call

    async def send(self, url_index: int, template: Template, owner: int | None) -> None:
        import grpc

        t0 = time.perf_counter()
        call = self._call(url_index, owner)(template.payload, timeout=self.timeout)
        t1 = time.perf_counter()
        try:
            body = await call
        except grpc.RpcError as exc:
            raise grpc_failure(exc) from None
        t2 = time.perf_counter()
        wire.check_grpc(template, body)
        window = self.recorder.current
        window.send_s += t1 - t0
        window.check_s += time.perf_counter() - t2

    async def close(self) -> None:
        await super().close()
        for channel in self.channels:
            with contextlib.suppress(Exception):
                await channel.close(grace=None)


class _Stream:
    """One `ModelStreamInfer` stream with one request in flight."""

    def __init__(self, call):
        self.call = call
        self.sent_at = 0.0
        self.busy = False
        self.timed_out = False
        self.closed = False


class GrpcStreamSender(GrpcSender):
    """gRPC `ModelStreamInfer` (perf_analyzer's --streaming): a stream per slot or per request in flight."""

    def __init__(self, urls: list[str], timeout: float, recorder: load.Recorder):
        super().__init__(urls, timeout, recorder)
        self.owned: dict[int, _Stream] = {}
        self.pools: list[list[_Stream]] = [[] for _ in urls]
        self.live: set[_Stream] = set()
        self.methods: list = []

    async def start(self) -> None:
        await super().start()
        self.methods = [
            self._channel(i, -1).stream_stream(wire.STREAM_METHOD, _registered_method=True)
            for i in range(len(self.urls))
        ]

    def _open(self, url_index: int) -> _Stream:
        stream = _Stream(self.methods[url_index]())
        self.live.add(stream)
        return stream

    async def send(self, url_index: int, template: Template, owner: int | None) -> None:
        import grpc
        import grpc.aio

        t0 = time.perf_counter()
        if owner is not None:
            stream = self.owned.get(owner)
            if stream is None or stream.closed:
                self.live.discard(stream)
                stream = self.owned[owner] = self._open(url_index)
        else:
            pool = self.pools[url_index]
            stream = pool.pop() if pool else self._open(url_index)
        stream.busy, stream.sent_at = True, time.monotonic()
        try:
            await stream.call.write(template.payload)
            t1 = time.perf_counter()
            body = await stream.call.read()
        except (grpc.RpcError, asyncio.CancelledError, asyncio.InvalidStateError) as exc:
            stream.closed = True
            if stream.timed_out:
                raise WireFailure(KIND_TIMEOUT, f"no answer within {self.timeout:g} s") from None
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise (
                grpc_failure(exc)
                if isinstance(exc, grpc.RpcError)
                else WireFailure(KIND_CONNECTION, "the stream was closed")
            ) from None
        finally:
            stream.busy = False
        if body is grpc.aio.EOF:
            stream.closed = True
            raise WireFailure(KIND_CONNECTION, "the server ended the stream")
        t2 = time.perf_counter()
        try:
            wire.check_stream(template, body)
        except WireFailure:
            stream.closed = True  # an answer out of step: the next request gets a fresh stream
            stream.call.cancel()
            raise
        window = self.recorder.current
        window.send_s += t1 - t0
        window.check_s += time.perf_counter() - t2
        if owner is None:
            self.pools[url_index].append(stream)

    def expire(self, before: float) -> None:
        for stream in list(self.live):
            if stream.closed:
                self.live.discard(stream)
            elif stream.busy and stream.sent_at < before:
                stream.timed_out = stream.closed = True
                stream.call.cancel()

    async def close(self) -> None:
        for stream in self.live:
            with contextlib.suppress(Exception):
                stream.call.cancel()
        self.live.clear()
        await super().close()


SENDERS = {"http": HttpSender, "grpc": GrpcSender, "grpc_stream": GrpcStreamSender}
