"""Test hosts on one machine: network namespaces joined to this one by veth pairs.

Each host has the address 10.231.S.2 and reaches this (the server's) namespace
at 10.231.S.1 over its own link, S a subnet no other link on this machine has
(tests run side by side in several processes); `cut()` takes that link down, as
a pulled cable would.  Only these test hosts and loopback are ever addressed.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

FORWARDER = r"""
import asyncio, sys

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()

async def main(listen_host, listen_port, target_port):
    async def handle(reader, writer):
        try:
            r2, w2 = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
    hosts = listen_host.split(",")
    server = await asyncio.start_server(handle, hosts, int(listen_port))
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def namespaces_available() -> str:
    """'' when this machine lets us make network namespaces, else why not."""
    probe = f"dct-probe-{uuid.uuid4().hex[:6]}"
    try:
        run("ip", "netns", "add", probe)
        run("ip", "netns", "del", probe)
    except FileNotFoundError:
        return "the 'ip' command is missing (Debian: apt-get install iproute2)"
    except subprocess.CalledProcessError as exc:
        return f"'ip netns add' failed: {exc.stderr.strip()}"
    return ""


PICKED: set[int] = set()  # by this process, made or about to be


def unused_subnet() -> int:
    """An S for 10.231.S.0/24 that no address on this machine is in and this process has not picked
    (at random among them, so two processes making hosts at once rarely pick the same one)."""
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    used = PICKED | {int(s) for s in re.findall(r"inet 10\.231\.(\d+)\.", shown)}
    picked = random.choice([s for s in range(1, 255) if s not in used])
    PICKED.add(picked)
    return picked


@dataclass
class Host:
    index: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:4])
    subnet: int = field(default_factory=unused_subnet)

    @property
    def ns(self) -> str:
        return f"dct{self.tag}h{self.index}"

    @property
    def outside(self) -> str:  # the link's end in the server's namespace
        return f"dct{self.tag}o{self.index}"

    @property
    def server_ip(self) -> str:
        return f"10.231.{self.subnet}.1"

    @property
    def ip(self) -> str:
        return f"10.231.{self.subnet}.2"

    def create(self) -> None:
        run("ip", "netns", "add", self.ns)
        run("ip", "link", "add", self.outside, "type", "veth", "peer", "name", "eth0", "netns", self.ns)
        run("ip", "addr", "add", f"{self.server_ip}/24", "dev", self.outside)
        run("ip", "link", "set", self.outside, "up")
        run("ip", "netns", "exec", self.ns, "ip", "addr", "add", f"{self.ip}/24", "dev", "eth0")
        run("ip", "netns", "exec", self.ns, "ip", "link", "set", "eth0", "up")
        run("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")

    def cut(self) -> None:
        run("ip", "link", "set", self.outside, "down")

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.outside], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *argv]


def start_forwarder(listen: list[str], port: int, target_port: int) -> subprocess.Popen:
    """Forward TCP from `listen` addresses:port to 127.0.0.1:target_port (the server's loopback services)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", FORWARDER, ",".join(listen), str(port), str(target_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"forwarder did not start: {proc.stderr.read()}")
    return proc
