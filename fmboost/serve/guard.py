"""What stands between the network and the app of `fmboost serve`: who is answered, the headers every answer
carries, and how many connections may be open and for how long before a request has arrived.

Any web page the user visits can send requests to 127.0.0.1 (a cross-site POST of `text/plain` needs no CORS
preflight), and a DNS-rebinding page, under a name of its own that it later points at 127.0.0.1, can even read the
answers. So a request is answered only when its Host header names this server (the address it listens on,
localhost, or an `--allow-host` name) and its Origin, which browsers send with every POST and cross-site fetch, is
the server's own (or an `--allow-origin` value). Tools that send no Origin (curl, scripts) are not web pages and are
answered.
"""
from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# The page needs nothing from elsewhere; this also stops it from ever fetching fonts or scripts online.
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'")


def host_name(value: str) -> str:
    """`Host` header or address → the name without port or brackets, lower case: `[::1]:80` → `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host_name(host)).is_loopback
    except ValueError:
        return host_name(host) == "localhost"


def exposure_warning(host: str) -> str | None:
    """One line when `host` is reachable from other machines: anyone who can reach it can use it."""
    if is_loopback(host):
        return None
    return (f"fmboost serve: warning: listening on {host}, reachable from other machines: anyone who can reach it "
            f"can upscale on it; requests must name it as localhost or an --allow-host value")


@dataclass(frozen=True)
class Access:
    hosts: frozenset[str]  # names the Host header may give (no port)
    origins: frozenset[str]  # Origin values besides the server's own (scheme://host[:port])

    @classmethod
    def for_address(cls, host: str = "127.0.0.1", allow_hosts=(), allow_origins=()) -> "Access":
        """The bound address (unless a wildcard such as 0.0.0.0), localhost and `allow_hosts`; `allow_origins`."""
        names = {*LOOPBACK_NAMES, *(host_name(h) for h in allow_hosts)}
        if host_name(host) not in ("0.0.0.0", "::", ""):
            names.add(host_name(host))
        return cls(frozenset(names), frozenset(o.strip().rstrip("/").lower() for o in allow_origins))

    def refusal(self, host: str | None, origin: str | None, scheme: str = "http") -> str | None:
        """Why a request with these headers is not answered, in one line; None when it is."""
        if host is not None and host_name(host) not in self.hosts:
            return (f"this server does not answer requests for {host_name(host)!r} (a page of another site may be "
                    f"posing as it); if that is this server's name, start it with --allow-host {host_name(host)}")
        if origin is not None:
            own = f"{scheme}://{host}".lower() if host is not None else None
            if origin.lower() not in (own, *self.origins):
                return (f"this server answers its own page only, not one from {origin}; to let that site use it, "
                        f"start it with --allow-origin {origin}")
        return None


class Guard:
    """ASGI middleware: refuses requests `access` does not allow (403 and one line, also logged), and adds
    `X-Content-Type-Options: nosniff` to every answer, the CSP to every HTML page, and `Cache-Control: no-store`
    to every API answer that sets none (results are the user's photos: kept out of shared and disk caches)."""

    def __init__(self, app, access: Access):
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        why = self.access.refusal(headers.get("host"), headers.get("origin"), scope.get("scheme", "http"))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out.setdefault("x-content-type-options", "nosniff")
                if out.get("content-type", "").startswith("text/html"):
                    out.setdefault("content-security-policy", CSP)
                if scope["path"].startswith("/api/"):
                    out.setdefault("cache-control", "no-store")
            await send(message)

        if why is not None:
            print(f"fmboost serve: refused {scope['method']} {scope['path']}: {why}", file=sys.stderr, flush=True)
            response = JSONResponse({"error": why}, status_code=403)
            return await response(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)


BUSY = b'{"error": "the server has too many connections open; try again in a moment"}'


def bounded_protocol(max_connections: int, header_timeout_s: float):
    """uvicorn's h11 protocol with two bounds uvicorn lacks: at most `max_connections` open at once (a connection
    beyond is answered 503 at once, before it is read), and `header_timeout_s` to send a whole request's headers
    (or, after an answer, the next request's): a client that trickles them is disconnected."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    busy = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n"
            b"x-content-type-options: nosniff\r\ncache-control: no-store\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(BUSY), BUSY))

    class BoundedH11Protocol(H11Protocol):
        header_timer = None
        refused = False

        def connection_made(self, transport):
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                # Answered, then half-closed; what the client sends is read and dropped for a moment, as closing
                # with unread data would reset the connection and lose the answer.
                self.refused = True
                transport.write(busy)
                if transport.can_write_eof():
                    transport.write_eof()
                self.loop.call_later(1.0, transport.close)
                return
            self.arm()

        def data_received(self, data):
            if not self.refused:
                super().data_received(data)

        def arm(self):
            if self.header_timer is not None:
                self.header_timer.cancel()
            self.header_timer = self.loop.call_later(header_timeout_s, self.headers_too_slow)

        def headers_too_slow(self):
            """No request is in the app's hands: the client is between requests, trickling one's headers, or
            still sending the body of a request already answered (a refusal that did not read it)."""
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self.transport.close()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self.arm()

        def connection_lost(self, exc):
            if self.header_timer is not None:
                self.header_timer.cancel()
            super().connection_lost(exc)

    return BoundedH11Protocol
