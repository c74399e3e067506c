#!/usr/bin/env python3
"""An independent HTTP/3 client for Ferrocast's edge tests (aioquic).

    fetch.py [--cafile PEM | --insecure] [--timeout S] URL [URL ...]

Fetches each URL in order over one QUIC connection per host:port (ALPN h3)
and prints one JSON array on stdout, one object per URL:

    {"url": ..., "status": 200, "headers": {"content-type": ...},
     "length": N, "sha256": "...", "text": "..." (playlists and text only)}

A URL that fails gives {"url": ..., "error": "..."}. Exit status 0 when every
request got an HTTP answer (whatever its status), 1 otherwise.
"""

import argparse
import asyncio
import hashlib
import json
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class H3Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._pending = {}

    def quic_event_received(self, event):
        for h3_event in self._http.handle_event(event):
            if isinstance(h3_event, (HeadersReceived, DataReceived)):
                entry = self._pending.get(h3_event.stream_id)
                if entry is None:
                    continue
                future, response = entry
                if isinstance(h3_event, HeadersReceived):
                    response["headers"].extend(h3_event.headers)
                else:
                    response["body"] += h3_event.data
                if h3_event.stream_ended and not future.done():
                    future.set_result(response)

    async def get(self, url):
        parsed = urlparse(url)
        path = parsed.path + ("?" + parsed.query if parsed.query else "")
        stream_id = self._quic.get_next_available_stream_id()
        future = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = (future, {"headers": [], "body": b""})
        self._http.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", parsed.netloc.encode()),
                (b":path", path.encode()),
                (b"user-agent", b"ferrocast-h3-test"),
            ],
            end_stream=True,
        )
        self.transmit()
        try:
            return await future
        finally:
            self._pending.pop(stream_id, None)


def summarise(url, response):
    headers = {}
    status = None
    for name, value in response["headers"]:
        name, value = name.decode(), value.decode(errors="replace")
        if name == ":status":
            status = int(value)
        else:
            headers[name] = value
    body = response["body"]
    out = {
        "url": url,
        "status": status,
        "headers": headers,
        "length": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    content_type = headers.get("content-type", "")
    if "mpegurl" in content_type or content_type.startswith("text/"):
        out["text"] = body.decode(errors="replace")
    return out


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cafile", help="PEM certificate to trust")
    parser.add_argument("--insecure", action="store_true", help="skip certificate checks")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per request")
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()

    results, ok = [], True
    clients = {}
    try:
        for url in args.urls:
            parsed = urlparse(url)
            key = (parsed.hostname, parsed.port or 443)
            try:
                if key not in clients:
                    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
                    config.server_name = "localhost"
                    if args.insecure:
                        config.verify_mode = ssl.CERT_NONE
                    if args.cafile:
                        config.load_verify_locations(args.cafile)
                    manager = connect(
                        key[0], key[1], configuration=config, create_protocol=H3Client
                    )
                    client = await asyncio.wait_for(manager.__aenter__(), args.timeout)
                    clients[key] = (manager, client)
                client = clients[key][1]
                response = await asyncio.wait_for(client.get(url), args.timeout)
                results.append(summarise(url, response))
            except Exception as e:  # reported per URL, as JSON
                ok = False
                results.append({"url": url, "error": f"{type(e).__name__}: {e}"})
    finally:
        for manager, _ in clients.values():
            try:
                await manager.__aexit__(None, None, None)
            except Exception:
                pass
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
