#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/.

Seeds are small valid inputs the fuzzers mutate from: request bodies in
JSON and msgpack, event records, edits of fuzz_jwt's signed token, and
sequences of talent and identity commands, and events for the talent read
model. The corpus in the repository was made by
this script, plus the inputs that once failed (regress-*), kept so that
`make fuzz-check` replays them.
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TALENT = "0193a5b0-0000-7000-8000-0000000000aa"
OWNER = "0193a5b0-0000-7000-8000-000000000001"


def pack(v):
    """msgpack of a JSON-like value, as guild packs it (smallest forms)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if 0 <= v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xd9" + bytes([len(b)]) + b if len(b) < 256 else b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(pack(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(v)


COMMANDS = [  # (index in dom_talent.commands, body)
    (0, {"user_id": OWNER, "headline": "C programmer", "location": "Lyon", "timezone": "Europe/Paris"}),
    (1, {"talent_id": TALENT, "bio": "line one\nline \"two\" \u00e9\u2028"}),
    (2, {"talent_id": TALENT, "skill": "c", "level": 5, "years": 12}),
    (3, {"talent_id": TALENT, "skill": "c"}),
    (4, {"talent_id": TALENT, "name": "CKA", "issuer": "CNCF", "issued_on": "2024-01-31", "expires_on": "2027-01-31"}),
    (5, {"talent_id": TALENT, "name": "CKA"}),
    (6, {"talent_id": TALENT, "currency": "EUR", "hourly_rate": 9500}),
    (7, {"talent_id": TALENT, "hours_per_week": 30}),
    (8, {"talent_id": TALENT, "reservation_id": "job-1", "hours_per_week": 10}),
    (9, {"talent_id": TALENT, "reservation_id": "job-1"}),
    (10, {"talent_id": TALENT}),
]


U1 = "0193a5b0-0000-7000-8000-000000000001"  # fuzz_identity's first fresh id
IDENTITY = [  # (index in dom_identity.commands, caller 0-3, body)
    (0, 0, {"email": "ada@example.com", "password": "correct horse 42", "display_name": "Ada"}),
    (2, 0, {"email": "ADA@example.com", "password": "correct horse 42"}),
    (2, 0, {"email": "ada@example.com", "password": "wrong horse 42"}),
    (5, 1, {"current_password": "correct horse 42", "new_password": "battery staple 99"}),
    (6, 1, {"user_id": U1, "display_name": "Ada L", "email": "ada2@example.com"}),
    (7, 0, {"email": "ada2@example.com"}),
    (8, 0, {"token": "not-the-token", "new_password": "battery staple 99"}),
    (3, 0, {"refresh_token": "not-a-token"}),
    (12, 2, {"name": "recruiter", "permissions": ["talent:read"]}),
    (13, 2, {"role": "recruiter", "permission": "job:write"}),
    (14, 2, {"role": "recruiter", "permission": "talent:read"}),
    (15, 2, {"user_id": U1, "role": "recruiter"}),
    (16, 2, {"user_id": U1, "role": "recruiter"}),
    (9, 2, {"client_id": "billing", "permissions": ["talent:read"]}),
    (10, 0, {"client_id": "billing", "client_secret": "not-the-secret"}),
    (11, 2, {"client_id": "billing"}),
    (17, 2, {"user_id": U1, "reason": "left"}),
    (18, 2, {"user_id": U1}),
    (4, 1, {}),
    (1, 0, {"email": "root@example.com", "password": "correct horse 42", "display_name": "Root"}),
]

EVENTS = [  # (index in dom_talent.events, profile 0-3, data)
    (0, 0, {"talent_id": "0193a5b0-0000-7000-8000-0000000000a1", "user_id": OWNER,
            "headline": "C programmer", "location": "Lyon", "timezone": "Europe/Paris"}),
    (3, 0, {"skill": "c", "level": 5, "years": 12}),
    (3, 0, {"skill": "go", "level": 3}),
    (4, 0, {"skill": "go", "level": 4, "years": 2}),
    (6, 0, {"name": "CKA", "issuer": "CNCF", "issued_on": "2024-01-31", "expires_on": "2027-01-31"}),
    (8, 0, {"currency": "EUR", "hourly_rate": 9500, "previous_currency": None, "previous_rate": None}),
    (8, 0, {"currency": "USD", "hourly_rate": 12000, "previous_currency": "EUR", "previous_rate": 9500}),
    (9, 0, {"hours_per_week": 30}),
    (10, 0, {"reservation_id": "job-1", "hours_per_week": 10}),
    (11, 0, {"reservation_id": "job-1", "hours_per_week": 10}),
    (2, 0, {"headline": "Compiler engineer", "bio": "a\nb"}),
    (5, 0, {"skill": "c"}),
    (7, 0, {"name": "CKA"}),
    (0, 1, {"talent_id": "0193a5b0-0000-7000-8000-0000000000a2", "user_id": OWNER,
            "headline": "Second", "location": "Lyon"}),
    (3, 1, {"skill": "c", "level": 4}),
    (12, 1, {}),
    (2, 2, {"headline": "never created"}),
]


HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
IDENTITY_EVENTS = [  # (index in dom_identity.events, stream 0-3: two users, a role, a client)
    (0, 0, {"user_id": "0193a5b0-0000-7000-8000-0000000000a1", "email": "ada@example.com",
            "display_name": "Ada", "password_hash": HASH, "roles": ["user"]}),
    (7, 0, {"session_id": "aa" * 16, "refresh_hash": "bb" * 16, "expires_at": 1764000900000000000}),
    (8, 0, {"session_id": "aa" * 16, "refresh_hash": "cc" * 16}),
    (3, 0, {"token_hash": "dd" * 16, "expires_at": 1764000900000000000}),
    (4, 0, {"password_hash": HASH, "token_hash": "dd" * 16}),
    (2, 0, {"password_hash": HASH}),
    (1, 0, {"display_name": "Ada L", "email": "ada2@example.com"}),
    (17, 2, {"role": "recruiter", "permissions": ["talent:read", "job:write"]}),
    (10, 0, {"role": "recruiter"}),
    (19, 2, {"permission": "job:read"}),
    (21, 3, {"client_id": "billing", "permissions": ["talent:read"], "secret_hash": "ee" * 16}),
    (12, 0, {"reason": "left"}),
    (13, 0, {}),
    (9, 0, {"session_id": "aa" * 16, "reason": "logout"}),
    (0, 1, {"user_id": "0193a5b0-0000-7000-8000-0000000000a2", "email": "root@example.com",
            "display_name": "Root", "password_hash": HASH, "roles": ["user", "admin"]}),
]


def record(position, stream_version, data):
    fields = [
        ("id", "01a21aec-e1c8-7002-99ef-9ae1b166dda0"),
        ("type", "skill_added"),
        ("schema", 1),
        ("domain", "talent"),
        ("stream", "talent-" + TALENT),
        ("version", stream_version),
        ("position", position),
        ("time", 1764000000000000000),
        ("command_id", "cmd-1"),
        ("correlation_id", ""),
        ("causation_id", ""),
        ("actor", OWNER),
        ("data", data),
        ("prev", bytes(32)),
        ("hash", bytes(range(32))),
    ]
    return b"\xde" + struct.pack(">H", len(fields)) + b"".join(pack(k) + pack(v) for k, v in fields)


def write(target, name, blob):
    d = os.path.join(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus"), target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob)


def main():
    for i, body in COMMANDS:
        write("fuzz_codec", "json-%02d" % i, json.dumps(body).encode())
        write("fuzz_codec", "msgpack-%02d" % i, pack(body))
    write("fuzz_codec", "types", pack({"a": [1, -1, 1 << 40, -(1 << 40), 1.5, True, None, "x"], "b": {}}))
    write("fuzz_jwt", "signed", b"\x00")  # the signed token as it is
    write("fuzz_jwt", "edited", b"\x00\x05A")  # one character of it changed
    write("fuzz_jwt", "raw", b"\x01eyJhbGciOiJFZERTQSJ9.e30.AAAA")
    write("fuzz_record", "skill_added", record(7, 3, {"skill": "c", "level": 5}))
    write("fuzz_record", "empty_data", record(1, 1, {}))
    seq = b""
    for n, (i, body) in enumerate(COMMANDS):
        blob = json.dumps(body).encode() if n % 2 else pack(body)
        seq += bytes([i, 0]) + struct.pack(">H", len(blob)) + blob
        write("fuzz_talent", "upto-%02d" % i, seq)
    seq = b""
    for n, (i, who, body) in enumerate(IDENTITY):
        blob = json.dumps(body).encode() if n % 2 == 0 else pack(body)
        seq += bytes([i, who]) + struct.pack(">H", len(blob)) + blob
        write("fuzz_identity", "upto-%02d" % n, seq)
    gone = b""  # a deactivated user tries to log in, then is let back
    for i, who, body in [IDENTITY[0], (17, 2, {"user_id": U1}), IDENTITY[1], (18, 2, {"user_id": U1}),
                         IDENTITY[1]]:
        blob = json.dumps(body).encode()
        gone += bytes([i, who]) + struct.pack(">H", len(blob)) + blob
    write("fuzz_identity", "deactivated-login", gone)
    # Kept secrets: "$0" is the last handed out, "$1" the one before.
    flows = {
        "refresh-rotation": [IDENTITY[0], IDENTITY[1], (3, 0, {"refresh_token": "$0"}),
                             (3, 0, {"refresh_token": "$1"}), (3, 0, {"refresh_token": "$0"})],
        "reset-once": [IDENTITY[0], (7, 0, {"email": "ada@example.com"}),
                       (8, 0, {"token": "$0", "new_password": "battery staple 99"}),
                       (8, 0, {"token": "$0", "new_password": "another one 1234"}),
                       (2, 0, {"email": "ada@example.com", "password": "battery staple 99"})],
        "service-token": [(9, 2, {"client_id": "billing", "permissions": ["talent:read"]}),
                          (10, 0, {"client_id": "billing", "client_secret": "$0"}),
                          (11, 2, {"client_id": "billing"}),
                          (10, 0, {"client_id": "billing", "client_secret": "$0"})],
    }
    for name, steps in flows.items():
        blob_seq = b""
        for i, who, body in steps:
            blob = json.dumps(body).encode()
            blob_seq += bytes([i, who]) + struct.pack(">H", len(blob)) + blob
        write("fuzz_identity", name, blob_seq)
    frames = b"\x00"  # the talent model
    for n, (t, who, body) in enumerate(EVENTS):
        blob = pack(body)
        frames += bytes([t, who]) + struct.pack(">H", len(blob)) + blob
        write("fuzz_projector", "upto-%02d" % n, frames)
    frames = b"\x01"  # the identity model
    for n, (t, who, body) in enumerate(IDENTITY_EVENTS):
        blob = pack(body)
        frames += bytes([t, who]) + struct.pack(">H", len(blob)) + blob
        write("fuzz_projector", "identity-%02d" % n, frames)
    # Another user, then the owner after archiving: both refused.
    for name, steps in {"other-user": [(0, 0, COMMANDS[0][1]), (2, 1, COMMANDS[2][1]), (6, 1, COMMANDS[6][1])],
                        "archived": [(0, 0, COMMANDS[0][1]), (10, 0, COMMANDS[10][1]), (2, 0, COMMANDS[2][1]),
                                     (10, 2, COMMANDS[10][1])]}.items():
        blob_seq = b""
        for i, who, body in steps:
            blob = json.dumps(body).encode()
            blob_seq += bytes([i, who]) + struct.pack(">H", len(blob)) + blob
        write("fuzz_talent", name, blob_seq)
    admin = b""
    for i, body in COMMANDS[:3]:
        blob = json.dumps(body).encode()
        admin += bytes([i, 2]) + struct.pack(">H", len(blob)) + blob
    write("fuzz_talent", "admin", admin)


main()
