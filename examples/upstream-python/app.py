#!/usr/bin/env python3
"""A chat-style echo app in Python (websockets, as packaged by Debian: python3-websockets), unchanged
by Portcullis: the gateway in front of it does TLS, Origin, authentication and every limit.

Messages:
  whoami     -> JSON of what the gateway told the app: the subprotocol, the path, and the
                X-Forwarded-* / X-Portcullis-* headers it received
  close:NNNN -> the app closes with code NNNN (and a reason the gateway must not relay)
  anything   -> echoed back

Run: /usr/bin/python3 app.py [--port 9001]   (port 0 picks a free port; the port is printed)
"""
import argparse
import asyncio
import json

import websockets

FORWARDED = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")


async def handler(websocket, path=None):
    path = path if path is not None else websocket.path
    async for message in websocket:
        if message == "whoami":
            headers = websocket.request_headers
            seen = {
                name.lower(): headers[name]
                for name in headers.keys()
                if name.lower() in FORWARDED or name.lower().startswith("x-portcullis-")
            }
            await websocket.send(
                json.dumps({"subprotocol": websocket.subprotocol, "path": path, "headers": seen})
            )
        elif isinstance(message, str) and message.startswith("close:"):
            await websocket.close(int(message[6:]), "internal detail: db-7.corp failed")
            return
        else:
            await websocket.send(message)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    async with websockets.serve(
        handler, "127.0.0.1", args.port, subprotocols=["chat.v1"], max_size=65536
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
