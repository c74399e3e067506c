#!/usr/bin/env python3
"""An independent HTTP/3 client for Ferrocast's edge tests (aioquic).

    fetch.py [--cafile PEM | --insecure] [--timeout S] [--concurrent] URL [URL ...]
    fetch.py [--cafile PEM | --insecure] [--timeout S] --follow-hint MEDIA_PLAYLIST_URL

Fetches each URL in order (with --concurrent: all at once, on one
connection) over one QUIC connection per host:port (ALPN h3) and prints one
JSON array on stdout, one object per URL:

    {"url": ..., "status": 200, "headers": {"content-type": ...},
     "length": N, "sha256": "...", "text": "..." (playlists and text only),
     "first_data_event": K, "end_event": L}

The two event numbers order what happened across all URLs: each received
DATA and each stream end takes the next number (first_data_event is null
for an empty body), so "the first bytes of URL A came before URL B was
complete" reads first_data_event(A) < end_event(B).

--follow-hint: on one connection, GET the media playlist, then block
(_HLS_msn/_HLS_part) until its preload-hinted part is complete; the answer
hints a part that has only just begun: GET that part and, at the same time,
the blocking playlist request for it. Reports those two, part first.

A URL that fails gives {"url": ..., "error": "..."}. Exit status 0 when every
request got an HTTP answer (whatever its status), 1 otherwise.
"""

import argparse
import asyncio
import hashlib
import json
import ssl
import sys
from urllib.parse import urljoin, urlparse

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
        self._events = 0

    def _event(self):
        self._events += 1
        return self._events

    def quic_event_received(self, event):
        for h3_event in self._http.handle_event(event):
            if isinstance(h3_event, (HeadersReceived, DataReceived)):
                entry = self._pending.get(h3_event.stream_id)
                if entry is None:
                    continue
                future, response = entry
                if isinstance(h3_event, HeadersReceived):
                    response["headers"].extend(h3_event.headers)
                elif h3_event.data:
                    if response["first_data_event"] is None:
                        response["first_data_event"] = self._event()
                    response["body"] += h3_event.data
                if h3_event.stream_ended and not future.done():
                    response["end_event"] = self._event()
                    future.set_result(response)

    async def get(self, url):
        parsed = urlparse(url)
        path = parsed.path + ("?" + parsed.query if parsed.query else "")
        stream_id = self._quic.get_next_available_stream_id()
        future = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = (
            future,
            {"headers": [], "body": b"", "first_data_event": None, "end_event": None},
        )
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
        "first_data_event": response["first_data_event"],
        "end_event": response["end_event"],
    }
    content_type = headers.get("content-type", "")
    if "mpegurl" in content_type or content_type.startswith("text/"):
        out["text"] = body.decode(errors="replace")
    return out


async def concurrent(args):
    """Every URL at once on one connection (they must share host:port)."""
    parsed = urlparse(args.urls[0])
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.server_name = "localhost"
    if args.insecure:
        config.verify_mode = ssl.CERT_NONE
    if args.cafile:
        config.load_verify_locations(args.cafile)
    results, ok = [], True
    async with connect(
        parsed.hostname, parsed.port or 443, configuration=config, create_protocol=H3Client
    ) as client:
        answers = await asyncio.gather(
            *(asyncio.wait_for(client.get(url), args.timeout) for url in args.urls),
            return_exceptions=True,
        )
    for url, answer in zip(args.urls, answers):
        if isinstance(answer, Exception):
            ok = False
            results.append({"url": url, "error": f"{type(answer).__name__}: {answer}"})
        else:
            results.append(summarise(url, answer))
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0 if ok else 1


def hint_of(playlist_url, text):
    """The preload-hinted part's absolute URL and its (msn, part)."""
    for line in text.splitlines():
        if line.startswith("#EXT-X-PRELOAD-HINT:TYPE=PART"):
            uri = line.split('URI="', 1)[1].split('"', 1)[0]
            name = uri.split("?", 1)[0]
            msn, part = name[len("part"):-len(".m4s")].split(".")
            return urljoin(playlist_url, uri), int(msn), int(part)
    raise ValueError("no preload hint in the playlist")


def blocking(playlist_url, msn, part):
    sep = "&" if "?" in playlist_url else "?"
    return f"{playlist_url}{sep}_HLS_msn={msn}&_HLS_part={part}"


async def follow_hint(args):
    url = args.urls[0]
    parsed = urlparse(url)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.server_name = "localhost"
    if args.insecure:
        config.verify_mode = ssl.CERT_NONE
    if args.cafile:
        config.load_verify_locations(args.cafile)
    async with connect(
        parsed.hostname, parsed.port or 443, configuration=config, create_protocol=H3Client
    ) as client:
        first = await asyncio.wait_for(client.get(url), args.timeout)
        _, msn, part = hint_of(url, first["body"].decode())
        held = await asyncio.wait_for(client.get(blocking(url, msn, part)), args.timeout)
        hint, msn, part = hint_of(url, held["body"].decode())
        urls = [hint, blocking(url, msn, part)]
        answers = await asyncio.gather(
            *(asyncio.wait_for(client.get(u), args.timeout) for u in urls)
        )
    json.dump([summarise(u, a) for u, a in zip(urls, answers)], sys.stdout)
    sys.stdout.write("\n")
    return 0


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cafile", help="PEM certificate to trust")
    parser.add_argument("--insecure", action="store_true", help="skip certificate checks")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per request")
    parser.add_argument(
        "--concurrent", action="store_true", help="send every request at once"
    )
    parser.add_argument(
        "--follow-hint", action="store_true", help="stream the next hinted part (see above)"
    )
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()

    results, ok = [], True
    clients = {}
    try:
        if args.concurrent:
            return await concurrent(args)
        if args.follow_hint:
            return await follow_hint(args)
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
