#!/usr/bin/env python3
"""peer_forge.py: attacks on the peers' control channel, for tests/lab/peers.sh.

  capture IFACE FILE   (run in the receiving peer's namespace) wait for one UDP datagram to
                       port 7946 on IFACE (AF_PACKET, so the daemon still gets it) and
                       write its payload to FILE
  send ADDR:PORT FILE [--flip N] [--junk N]
                       (run in another peer's namespace) send FILE's payload to ADDR:PORT
                       as it is (a replay), with byte N flipped (a forgery), or N random
                       datagrams of random sizes (garbage)
"""
import os
import socket
import struct
import sys
import time

PORT = 7946


def capture(iface, path, timeout=5.0):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800))
    s.bind((iface, 0))
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = s.recv(65535)
        ip = frame[14:]
        if len(ip) < 20 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        udp = ip[ihl:]
        dport = struct.unpack("!H", udp[2:4])[0]
        if dport != PORT:
            continue
        with open(path, "wb") as f:
            f.write(udp[8:])
        return 0
    print("capture: no peer message seen", file=sys.stderr)
    return 1


def send(target, path, flip=None, junk=0):
    host, port = target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if junk:
        for _ in range(junk):
            s.sendto(os.urandom(int.from_bytes(os.urandom(2), "big") % 1500 + 1),
                     (host, int(port)))
        return 0
    data = bytearray(open(path, "rb").read())
    if flip is not None:
        data[flip % len(data)] ^= 0x40
    s.sendto(bytes(data), (host, int(port)))
    return 0


def main():
    a = sys.argv[1:]
    if len(a) >= 3 and a[0] == "capture":
        return capture(a[1], a[2])
    if len(a) >= 3 and a[0] == "send":
        flip = int(a[a.index("--flip") + 1]) if "--flip" in a else None
        junk = int(a[a.index("--junk") + 1]) if "--junk" in a else 0
        return send(a[1], a[2], flip, junk)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
