#!/usr/bin/env python3
"""A TCP relay that delays every chunk by a fixed time, both ways, keeping order.

Stands in for netem's delay where the kernel has no netem: put it before the producer
(workers connect to LISTEN, it connects to TARGET) and every byte arrives DELAY ms late in each
direction, so a round trip through it costs 2 * DELAY more. Python 3 standard library only.

    delay_relay.py --listen 10.77.0.1:7627 --target 127.0.0.1:7628 --delay-ms 50

Prints "delay_relay: listening on HOST:PORT" on stderr once it accepts connections. Each side's
close (or reset) is passed on after the data before it. Ends on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import signal
import sys


def address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"'{text}' is not HOST:PORT")
    return host, int(port)


async def pipe(reader, writer, delay):
    """Copies reader to writer, each chunk written `delay` seconds after it was read."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def read():
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((loop.time() + delay, chunk))
        except OSError:
            pass
        queue.put_nowait((loop.time() + delay, b""))

    reading = asyncio.create_task(read())
    try:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        pass
    finally:
        reading.cancel()


async def relay(client_reader, client_writer, target, delay):
    try:
        server_reader, server_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            pipe(client_reader, server_writer, delay), pipe(server_reader, client_writer, delay)
        )
    finally:
        for writer in (client_writer, server_writer):
            writer.close()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", type=address, required=True, help="HOST:PORT to accept on")
    parser.add_argument("--target", type=address, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, required=True, help="delay of each direction")
    args = parser.parse_args()
    delay = args.delay_ms / 1000.0

    server = await asyncio.start_server(
        lambda r, w: relay(r, w, args.target, delay), *args.listen, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"delay_relay: listening on {host}:{port}, forwarding to "
          f"{args.target[0]}:{args.target[1]} {args.delay_ms:g} ms late each way",
          file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
