#!/usr/bin/env python3
"""gen-metadata.py OUT FILES [PER_DIR] -- writes a MooseFS 3.0.117 "MFSM 2.0" metadata
file with FILES one-chunk files in directories of PER_DIR (default 10000), for the
recovery and dump benchmarks (both masters load the same file). Layout as in
protocol/src/metadata.rs; no chunkserver holds the chunks."""
import struct, sys, time

out, files = sys.argv[1], int(sys.argv[2])
per = int(sys.argv[3]) if len(sys.argv) > 3 else 10000
now = int(time.time())
dirs = (files + per - 1) // per
b = bytearray(b"MFSM 2.0")
version = 1 + 2 * files + dirs
b += struct.pack(">QQ", version, (now << 32) | 0x5EED)

def section(name, ver, body):
    global b
    b += name + b" " + ver + struct.pack(">Q", len(body)) + body

section(b"SESS", b"1.5", struct.pack(">IH", 1, 16) + bytes(189))
scla = bytearray(b"\x04")
for i in range(1, 10):
    scla += struct.pack(">HBBBHBBB", i, 1, 0, 1, 0, i, i, i) + bytes([48 + i]) + bytes(48 * i)
scla += bytes(10)
section(b"SCLA", b"1.6", bytes(scla))

def node(t, ino, mode, tail=b""):
    return struct.pack(">BIBBBHIIIIIH", t, ino, 2 if t in (1, 2) else 0, 0, 0, mode, 0, 0, now, now, now, 24) + tail

total = 1 + dirs + files
nodes = bytearray(struct.pack(">II", total, total))
nodes += node(2, 1, 0o777)
edges = bytearray(struct.pack(">Q", 0x7FFFFFFFFFFFFFFE - total))
eid = 0x7FFFFFFFFFFFFFFE - total + 1
ino = 2
dir_inodes = []
for d in range(dirs):
    dir_inodes.append(ino)
    nodes += node(2, ino, 0o755)
    name = b"d%04d" % d
    edges += struct.pack(">IIQH", 1, ino, eid, len(name)) + name
    eid += 1
    ino += 1
chunk = 1
for d, dino in enumerate(dir_inodes):
    for i in range(min(per, files - d * per)):
        nodes += node(1, ino, 0o644, struct.pack(">QIQ", 1000, 1, chunk))
        name = b"f%05d" % i
        edges += struct.pack(">IIQH", dino, ino, eid, len(name)) + name
        eid += 1
        ino += 1
        chunk += 1
nodes += b"\x00"
edges += bytes(18)
section(b"NODE", b"1.4", bytes(nodes))
section(b"EDGE", b"1.1", bytes(edges))
section(b"FREE", b"1.0", struct.pack(">I", 0))
section(b"QUOT", b"1.1", struct.pack(">I", 0))
section(b"XATR", b"1.0", bytes(9))
section(b"PACL", b"1.1", bytes(17))
section(b"OPEN", b"1.0", bytes(8))
section(b"FLCK", b"1.0", bytes(17))
section(b"PLCK", b"1.0", bytes(37))
section(b"CSDB", b"1.3", struct.pack(">I", 0))
chnk = bytearray(struct.pack(">Q", chunk))
for c in range(1, chunk):
    chnk += struct.pack(">QIIB", c, 1, 0, 0)
chnk += bytes(17)
section(b"CHNK", b"1.1", bytes(chnk))
b += b"[MFS EOF MARKER]"
open(out, "wb").write(b)
