#!/usr/bin/env python3
"""Independent reader of backup-toolkit repositories, format version 1.

Written from FORMAT.md alone (section names are cited in comments), to prove
the specification is complete: it opens a repository in a local directory,
verifies every checksum, decrypts, walks the tree of one backup and extracts
it to a new directory, refusing unsafe names. It reads manifest versions 1
and 2 (hard links and extended attributes, restored too).

Usage:
    read_repo.py REPO OUTPUT [--password-file FILE] [--set SET] [--backup ID]
    read_repo.py REPO --list [--password-file FILE]

Exit status: 0 success; 1 damage or another error; 2 usage; 3 unsupported
format or manifest version; 4 password missing or wrong; 5 extracted, but
some extended attributes were refused by the target (each is reported on
stderr; the items are otherwise restored).

Dependencies: zstandard, PyNaCl (XChaCha20-Poly1305) and argon2-cffi
(Argon2id: the key files' 32-byte salt rules out libsodium's crypto_pwhash,
see FORMAT.md "Key files").
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import io
import json
import os
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import zstandard
from argon2.low_level import Type as Argon2Type
from argon2.low_level import hash_secret_raw

FORMAT_VERSIONS = (1, 1)  # oldest and newest format version read
MANIFEST_VERSIONS = (1, 2)  # oldest and newest manifest schema version read

ENVELOPE_MAGIC = b"BKUP"
ENVELOPE_HEADER_LEN = 8
CHECKSUM_LEN = 32
ENVELOPE_MIN_LEN = ENVELOPE_HEADER_LEN + CHECKSUM_LEN
FLAG_COMPRESSED = 0x01
FLAG_ENCRYPTED = 0x02

KIND_CONFIG, KIND_KEY, KIND_INDEX, KIND_MANIFEST, KIND_PACK_HEADER = 1, 2, 3, 4, 5
KIND_DELETION_MARK = 7
KIND_NAMES = {1: "config", 2: "key", 3: "index", 4: "manifest", 5: "pack header", 7: "deletion mark"}

BLOB_DATA, BLOB_TREE = 1, 2
BLOB_KINDS = {BLOB_DATA: "data", BLOB_TREE: "tree"}
BLOB_COMPRESSED = 0x01

PACK_MAGIC = b"BKPK"
PACK_TRAILER_LEN = 8
HEADER_ENTRY_LEN = 42
INDEX_BLOB_LEN = 46
INDEX_PACK_MIN_LEN = 44

NONCE_LEN = 24
TAG_LEN = 16
MASTER_KEY_LEN = 72
KEY_WRAP_AD = b"backup-toolkit key v1"
SCHEME = "xchacha20poly1305-argon2id"

MAX_METADATA_PLAINTEXT = 512 * 1024 * 1024
MAX_BLOB_RAW_LENGTH = 64 * 1024 * 1024
MAX_XATTR_VALUE = 65536  # bytes of one extended attribute's value

HEX_ID = re.compile(r"[0-9a-f]{64}\Z")
HEX_BYTES = re.compile(r"(?:[0-9a-f]{2})*\Z")
LOCAL_TEMP = re.compile(r"\.tmp-[0-9a-f]{32}\Z")


class ReadError(Exception):
    """Any failure; the message names the object involved."""

    exit_code = 1


class Damaged(ReadError):
    pass


class UnsupportedVersion(ReadError):
    exit_code = 3


class PasswordError(ReadError):
    exit_code = 4


def damaged(key: str, detail: str, offset: int | None = None) -> Damaged:
    where = f" at offset {offset}" if offset is not None else ""
    return Damaged(f"damaged object {key}{where}: {detail}")


# --- Conventions: JSON ------------------------------------------------------


def _no_duplicates(pairs):
    result = {}
    for name, value in pairs:
        if name in result:
            raise ValueError(f"duplicate key {name!r}")
        result[name] = value
    return result


def parse_json(key: str, data: bytes):
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as error:
        raise damaged(key, f"invalid JSON: {error}") from None


def is_int(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


U32, U64 = (0, 2**32 - 1), (0, 2**64 - 1)
I64 = (-(2**63), 2**63 - 1)

RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})\Z"
)


def parse_time(key: str, text) -> tuple[int, int]:
    """An RFC 3339 timestamp as (seconds since the epoch, nanoseconds)."""
    match = RFC3339.match(text) if isinstance(text, str) else None
    if not match:
        raise damaged(key, f"invalid timestamp {text!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset in ("Z", "z"):
        tz = datetime.timezone.utc
    else:
        sign = 1 if offset[0] == "+" else -1
        tz = datetime.timezone(sign * datetime.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError as error:
        raise damaged(key, f"invalid timestamp {text!r}: {error}") from None
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return int(moment.timestamp()), nanos


def parse_id(key: str, value, what: str) -> bytes:
    if not isinstance(value, str) or not HEX_ID.match(value):
        raise damaged(key, f"{what} is not 64 lowercase hex digits: {value!r}")
    return bytes.fromhex(value)


def parse_id_list(key: str, value, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise damaged(key, f"{what} is not an array")
    return [parse_id(key, item, what) for item in value]


# --- Compression ------------------------------------------------------------


def zstd_decompress(key: str, data: bytes, limit: int) -> bytes:
    """Decompresses, refusing more than `limit` bytes of output."""
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    out = bytearray()
    try:
        while len(out) <= limit:
            piece = reader.read(limit + 1 - len(out))
            if not piece:
                break
            out += piece
    except zstandard.ZstdError as error:
        raise damaged(key, f"zstd: {error}") from None
    if len(out) > limit:
        raise damaged(key, f"decompresses to more than {limit} bytes")
    return bytes(out)


# --- Encryption -------------------------------------------------------------


def aead_open(key: bytes, sealed: bytes, associated: bytes) -> bytes | None:
    """Opens Nonce || Ciphertext || Tag; None if it does not authenticate."""
    if len(sealed) < NONCE_LEN + TAG_LEN:
        return None
    try:
        return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
            sealed[NONCE_LEN:], associated, sealed[:NONCE_LEN], key
        )
    except nacl.exceptions.CryptoError:
        return None


@dataclass
class MasterKey:
    encryption: bytes
    id_key: bytes
    chunker_seed: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> "MasterKey":
        return cls(raw[0:32], raw[32:64], struct.unpack("<Q", raw[64:72])[0])

    def chunk_id(self, plaintext: bytes) -> bytes:
        return hmac.new(self.id_key, plaintext, hashlib.sha256).digest()


# --- The envelope -----------------------------------------------------------


def open_envelope(key_name: str, data: bytes, expected: int, master: MasterKey | None, encrypted_repo: bool) -> bytes:
    """FORMAT.md "Opening an envelope", steps 1 to 8 in order."""
    if len(data) < ENVELOPE_MIN_LEN:
        raise damaged(key_name, f"{len(data)} bytes, shorter than the minimum envelope of {ENVELOPE_MIN_LEN}")
    content, stored = data[:-CHECKSUM_LEN], data[-CHECKSUM_LEN:]
    actual = hashlib.sha256(content).digest()
    if actual != stored:
        raise damaged(
            key_name, f"checksum mismatch: stored {stored.hex()}, computed {actual.hex()}", len(content)
        )
    header, payload = content[:ENVELOPE_HEADER_LEN], content[ENVELOPE_HEADER_LEN:]
    if header[0:4] != ENVELOPE_MAGIC:
        raise damaged(key_name, "bad magic: not a repository object", 0)
    version = header[4]
    low, high = FORMAT_VERSIONS
    if not low <= version <= high:
        raise UnsupportedVersion(
            f"unsupported repository format version {version} in {key_name}: "
            f"this reader reads versions {low} to {high}"
        )
    if header[5] != expected:
        raise damaged(key_name, f"object kind {header[5]} where {expected} ({KIND_NAMES[expected]}) was expected", 5)
    flags = header[6]
    if flags & ~(FLAG_COMPRESSED | FLAG_ENCRYPTED) or header[7] != 0:
        raise damaged(key_name, f"invalid flags {flags:#04x} or reserved byte {header[7]:#04x}", 6)
    if flags & FLAG_ENCRYPTED:
        if expected in (KIND_CONFIG, KIND_KEY):
            raise damaged(key_name, "a config or key file is never encrypted", 6)
        if master is None:
            raise PasswordError(f"{key_name} is encrypted: a password is required")
        opened = aead_open(master.encryption, payload, header)
        if opened is None:
            raise damaged(
                key_name,
                "decryption failed: the object was modified or belongs to another repository",
                ENVELOPE_HEADER_LEN,
            )
        payload = opened
    elif encrypted_repo and expected not in (KIND_CONFIG, KIND_KEY):
        raise damaged(key_name, "unencrypted object in an encrypted repository: refused", 6)
    if flags & FLAG_COMPRESSED:
        payload = zstd_decompress(key_name, payload, MAX_METADATA_PLAINTEXT)
    return payload


# --- Indexes and packs ------------------------------------------------------


@dataclass(frozen=True)
class BlobEntry:
    kind: int
    flags: int
    offset: int
    stored_length: int
    raw_length: int
    id: bytes


@dataclass
class IndexFile:
    supersedes: list[bytes]
    packs: list[tuple[bytes, int, list[BlobEntry]]]


class Cursor:
    """Bounds-checked little-endian reads for one object."""

    def __init__(self, key: str, data: bytes):
        self.key, self.data, self.pos = key, data, 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int) -> bytes:
        if count > self.remaining():
            raise damaged(self.key, "truncated", self.pos)
        piece = self.data[self.pos : self.pos + count]
        self.pos += count
        return piece

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]


def check_blob_kind_flags(key: str, kind: int, flags: int, offset: int) -> None:
    if kind not in BLOB_KINDS:
        raise damaged(key, f"invalid blob kind {kind}", offset)
    if flags & ~BLOB_COMPRESSED:
        raise damaged(key, f"invalid blob flags {flags:#04x}", offset)


def decode_index(key: str, payload: bytes) -> IndexFile:
    """FORMAT.md "Indexes"."""
    cur = Cursor(key, payload)
    count = cur.u32()
    if count > cur.remaining() // 32:
        raise damaged(key, "supersedes count exceeds the object", cur.pos)
    supersedes = [cur.take(32) for _ in range(count)]
    pack_count = cur.u32()
    if pack_count > cur.remaining() // INDEX_PACK_MIN_LEN:
        raise damaged(key, "pack count exceeds the object", cur.pos)
    packs = []
    for _ in range(pack_count):
        pack_id, size, blob_count = cur.take(32), cur.u64(), cur.u32()
        if blob_count > cur.remaining() // INDEX_BLOB_LEN:
            raise damaged(key, "blob count exceeds the object", cur.pos)
        blobs = []
        for _ in range(blob_count):
            at = cur.pos
            kind, flags = cur.u8(), cur.u8()
            offset, stored, raw = cur.u32(), cur.u32(), cur.u32()
            blob_id = cur.take(32)
            check_blob_kind_flags(key, kind, flags, at)
            if offset + stored > size:
                raise damaged(key, f"blob {blob_id.hex()} extends past the end of pack {pack_id.hex()}", at)
            blobs.append(BlobEntry(kind, flags, offset, stored, raw, blob_id))
        packs.append((pack_id, size, blobs))
    if cur.remaining():
        raise damaged(key, "trailing bytes", cur.pos)
    return IndexFile(supersedes, packs)


def pack_key(pack_id: bytes) -> str:
    text = pack_id.hex()
    return f"data/{text[:2]}/{text}"


def decode_pack_header(key: str, pack: bytes, master: MasterKey | None, encrypted_repo: bool) -> list[BlobEntry]:
    """FORMAT.md "Packs": trailer, header envelope, entries, extents."""
    header_start = header_start_from_trailer(key, pack[-PACK_TRAILER_LEN:], len(pack))
    header = pack[header_start : len(pack) - PACK_TRAILER_LEN]
    return decode_header_entries(key, header, header_start, master, encrypted_repo)


def header_start_from_trailer(key: str, trailer: bytes, size: int) -> int:
    """Where the header of a pack of `size` bytes starts, from its trailer
    (HeaderLength, "BKPK")."""
    if size < PACK_TRAILER_LEN:
        raise damaged(key, f"pack of {size} bytes has no trailer")
    trailer_start = size - PACK_TRAILER_LEN
    header_length = struct.unpack("<I", trailer[:4])[0]
    if trailer[4:] != PACK_MAGIC:
        raise damaged(key, "bad pack magic", trailer_start + 4)
    if header_length > trailer_start:
        raise damaged(key, f"header length {header_length} exceeds the pack", trailer_start)
    return trailer_start - header_length


def decode_header_entries(
    key: str, header: bytes, header_start: int, master: MasterKey | None, encrypted_repo: bool
) -> list[BlobEntry]:
    """The entries of a pack header found at `header_start`; the blobs must
    fill the pack exactly up to it."""
    payload = open_envelope(key, header, KIND_PACK_HEADER, master, encrypted_repo)
    if len(payload) % HEADER_ENTRY_LEN:
        raise damaged(key, "pack header length is not a multiple of 42", header_start)
    entries, offset = [], 0
    for start in range(0, len(payload), HEADER_ENTRY_LEN):
        kind, flags, stored, raw = struct.unpack("<BBII", payload[start : start + 10])
        check_blob_kind_flags(key, kind, flags, header_start)
        entries.append(BlobEntry(kind, flags, offset, stored, raw, payload[start + 10 : start + 42]))
        offset += stored
    if offset != header_start:
        raise damaged(key, f"blobs end at {offset} but the header starts at {header_start}", header_start)
    return entries


# --- Repository -------------------------------------------------------------


@dataclass
class Backup:
    id: bytes
    manifest: dict
    time: tuple[int, int]


@dataclass
class Repository:
    root: Path
    config_bytes: bytes = b""
    config: dict = field(default_factory=dict)
    master: MasterKey | None = None
    blobs: dict[bytes, tuple[bytes, BlobEntry]] = field(default_factory=dict)
    packs: dict[bytes, tuple[int, list[BlobEntry]]] = field(default_factory=dict)
    doomed: set[bytes] = field(default_factory=set)

    @property
    def encrypted(self) -> bool:
        return self.config.get("encryption") is not None

    # Sink access: key a/b/c is the file <root>/a/b/c.
    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ReadError(f"object {key} is missing") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as file:
                file.seek(start)
                return file.read(length)
        except FileNotFoundError:
            raise ReadError(f"object {key} is missing") from None

    def list_names(self, prefix: str) -> list[str]:
        """Names of the objects directly under `prefix` (e.g. "index")."""
        directory = self._path(prefix)
        if not directory.is_dir():
            return []
        return sorted(
            entry.name for entry in directory.iterdir() if entry.is_file() and not LOCAL_TEMP.match(entry.name)
        )

    def get_named(self, key: str, object_id: bytes) -> bytes:
        data = self.get(key)
        actual = hashlib.sha256(data).digest()
        if actual != object_id:
            raise damaged(key, f"content hash {actual.hex()} does not match the object's name")
        return data

    # Step 1: config.
    def open_config(self) -> None:
        try:
            self.config_bytes = self._path("config").read_bytes()
        except FileNotFoundError:
            raise ReadError(f"no repository at {self.root} (no config object)") from None
        payload = open_envelope("config", self.config_bytes, KIND_CONFIG, None, False)
        config = parse_json("config", payload)
        if not isinstance(config, dict):
            raise damaged("config", "not a JSON object")
        version = config.get("version")
        if not is_int(version, *U32):
            raise damaged("config", f"invalid version {version!r}")
        low, high = FORMAT_VERSIONS
        if not low <= version <= high:
            raise UnsupportedVersion(
                f"unsupported repository format version {version} in config: this reader reads versions {low} to {high}"
            )
        parse_id("config", config.get("id"), "id")
        parse_time("config", config.get("created"))
        for name in ("chunker", "tree_chunker"):
            check_chunker("config", name, config.get(name))
        if not is_int(config.get("compression_level"), 0, 22):
            raise damaged("config", f"compression level {config.get('compression_level')!r} out of range")
        if not is_int(config.get("pack_size"), 1024 * 1024, 512 * 1024 * 1024):
            raise damaged("config", f"pack size {config.get('pack_size')!r} out of range")
        if config.get("encryption") not in (None, SCHEME):
            raise damaged("config", f"unknown encryption scheme {config.get('encryption')!r}")
        self.config = config

    # Step 2: key.
    def open_key(self, password: bytes | None) -> None:
        if not self.encrypted:
            return
        if password is None:
            raise PasswordError("the repository is encrypted: a password is required (--password-file)")
        problems = []
        for name in self.list_names("keys"):
            key_name = f"keys/{name}"
            try:
                key_file = self._read_key_file(key_name)
            except Damaged as error:
                problems.append(str(error))
                continue
            secret = self._unwrap(key_name, key_file, password)
            if secret is None:
                continue
            if len(secret) != MASTER_KEY_LEN + 32:
                raise damaged(key_name, f"wrapped secret is {len(secret)} bytes, not {MASTER_KEY_LEN + 32}")
            if secret[MASTER_KEY_LEN:] != hashlib.sha256(self.config_bytes).digest():
                raise damaged(
                    "config", "does not match the digest in the repository's key: the config was modified"
                )
            self.master = MasterKey.from_bytes(secret[:MASTER_KEY_LEN])
            return
        if problems:
            raise PasswordError("no key file opens with the password; damaged key files: " + "; ".join(problems))
        raise PasswordError("wrong password: no key file opens with it")

    def _read_key_file(self, key_name: str) -> dict:
        data = self.get(key_name)
        name = key_name.split("/", 1)[1]
        if not HEX_ID.match(name) or hashlib.sha256(data).hexdigest() != name:
            raise damaged(key_name, "name is not the SHA-256 of the key file")
        key_file = parse_json(key_name, open_envelope(key_name, data, KIND_KEY, None, True))
        if not isinstance(key_file, dict) or key_file.get("kdf") != "argon2id":
            raise damaged(key_name, "kdf is not argon2id")
        params = key_file.get("params")
        if not isinstance(params, dict):
            raise damaged(key_name, "params missing")
        memory, iterations, lanes = params.get("memory_kib"), params.get("iterations"), params.get("parallelism")
        if not (
            is_int(memory, 8, 4 * 1024 * 1024)
            and is_int(iterations, 1, 100)
            and is_int(lanes, 1, 64)
            and memory >= 8 * lanes
        ):
            raise damaged(key_name, f"key derivation parameters out of range: {params}")
        try:
            salt = bytes.fromhex(key_file.get("salt"))
            sealed = bytes.fromhex(key_file.get("data"))
        except (TypeError, ValueError):
            raise damaged(key_name, "salt or data is not hex") from None
        if len(salt) < 8:
            raise damaged(key_name, "salt shorter than 8 bytes")
        key_file["_salt"], key_file["_sealed"] = salt, sealed
        return key_file

    @staticmethod
    def _unwrap(key_name: str, key_file: dict, password: bytes) -> bytes | None:
        params = key_file["params"]
        kek = hash_secret_raw(
            secret=password,
            salt=key_file["_salt"],
            time_cost=params["iterations"],
            memory_cost=params["memory_kib"],
            parallelism=params["parallelism"],
            hash_len=32,
            type=Argon2Type.ID,
            version=19,
        )
        return aead_open(kek, key_file["_sealed"], KEY_WRAP_AD)

    # Step 3: index.
    def load_index(self) -> None:
        files = {}
        for name in self.list_names("index"):
            if not HEX_ID.match(name):
                continue
            key = f"index/{name}"
            data = self.get_named(key, bytes.fromhex(name))
            files[bytes.fromhex(name)] = decode_index(
                key, open_envelope(key, data, KIND_INDEX, self.master, self.encrypted)
            )
        superseded = {old for file in files.values() for old in file.supersedes}
        self.doomed = self.load_deletion_marks()
        for index_id in sorted(files):
            if index_id in superseded:
                continue
            for pack_id, size, blobs in files[index_id].packs:
                known = self.packs.setdefault(pack_id, (size, []))
                if known[0] != size:
                    raise damaged(f"index/{index_id.hex()}", f"pack {pack_id.hex()} listed with two sizes")
                known[1].extend(blobs)
                for blob in blobs:
                    self.locate(pack_id, blob)
        # Step 3, deletion marks: doomed packs in no index are read from their
        # own headers; a backup may still reference their chunks.
        for pack_id in sorted(self.doomed - self.packs.keys()):
            key = pack_key(pack_id)
            try:
                size = self._path(key).stat().st_size
            except FileNotFoundError:
                continue
            try:
                entries = self.read_pack_header(key, size)
            except Damaged as error:
                print(f"warning: doomed pack left out: {error}", file=sys.stderr)
                continue
            self.packs[pack_id] = (size, entries)
            for blob in entries:
                self.locate(pack_id, blob)

    def locate(self, pack_id: bytes, blob: BlobEntry) -> None:
        """Step 3, "which copy": not doomed first, then the smallest pack id."""
        current = self.blobs.get(blob.id)
        if current is None or (pack_id in self.doomed, pack_id) < (current[0] in self.doomed, current[0]):
            self.blobs[blob.id] = (pack_id, blob)

    def load_deletion_marks(self) -> set[bytes]:
        doomed: set[bytes] = set()
        for name in self.list_names("pending"):
            if not HEX_ID.match(name):
                continue
            key = f"pending/{name}"
            try:
                data = self.get_named(key, bytes.fromhex(name))
            except ReadError as error:
                if isinstance(error, Damaged):
                    raise
                continue  # completed by a prune meanwhile
            mark = parse_json(key, open_envelope(key, data, KIND_DELETION_MARK, self.master, self.encrypted))
            if not isinstance(mark, dict):
                raise damaged(key, "not a JSON object")
            parse_time(key, mark.get("marked_at"))
            doomed.update(parse_id_list(key, mark.get("packs"), "packs"))
        return doomed

    def read_pack_header(self, key: str, size: int) -> list[BlobEntry]:
        """A pack's header by two ranged reads: the trailer, then the header."""
        trailer = self.get_range(key, max(size - PACK_TRAILER_LEN, 0), PACK_TRAILER_LEN)
        header_start = header_start_from_trailer(key, trailer, size)
        header = self.get_range(key, header_start, size - PACK_TRAILER_LEN - header_start)
        return decode_header_entries(key, header, header_start, self.master, self.encrypted)

    # Step 4: manifests.
    def list_backups(self) -> list[Backup]:
        backups = []
        for name in self.list_names("manifests"):
            if not HEX_ID.match(name):
                continue
            key = f"manifests/{name}"
            data = self.get_named(key, bytes.fromhex(name))
            manifest = parse_json(key, open_envelope(key, data, KIND_MANIFEST, self.master, self.encrypted))
            backups.append(Backup(bytes.fromhex(name), manifest, check_manifest(key, manifest)))
        backups.sort(key=lambda backup: (backup.time, backup.id))
        return backups

    # Step 6: fetching a chunk.
    def read_chunk(self, chunk_id: bytes, kind: int) -> bytes:
        location = self.blobs.get(chunk_id)
        if location is None:
            raise ReadError(f"chunk {chunk_id.hex()} is referenced but not in any index")
        pack_id, entry = location
        if entry.kind != kind:
            raise damaged(
                pack_key(pack_id),
                f"chunk {chunk_id.hex()} is a {BLOB_KINDS[entry.kind]} blob where a {BLOB_KINDS[kind]} chunk was expected",
            )
        key = pack_key(pack_id)
        stored = self.get_range(key, entry.offset, entry.stored_length)
        return self.decode_blob(key, entry, stored)

    def decode_blob(self, key: str, entry: BlobEntry, stored: bytes) -> bytes:
        where = f"blob {entry.id.hex()}"
        if len(stored) != entry.stored_length:
            raise damaged(key, f"{where}: truncated, {len(stored)} bytes of {entry.stored_length}", entry.offset)
        if entry.raw_length > MAX_BLOB_RAW_LENGTH:
            raise damaged(key, f"{where}: raw length {entry.raw_length} is too large", entry.offset)
        body = stored
        if self.master is not None:
            body = aead_open(self.master.encryption, stored, entry.id + bytes([entry.kind]))
            if body is None:
                raise damaged(key, f"{where}: decryption failed (damaged or not this chunk)", entry.offset)
        if entry.flags & BLOB_COMPRESSED:
            body = zstd_decompress(f"{key} ({where})", body, entry.raw_length)
        if len(body) != entry.raw_length:
            raise damaged(key, f"{where}: {len(body)} bytes where {entry.raw_length} were expected", entry.offset)
        actual = self.master.chunk_id(body) if self.master is not None else hashlib.sha256(body).digest()
        if actual != entry.id:
            raise damaged(key, f"{where}: content hash mismatch, computed {actual.hex()}", entry.offset)
        return body

    def load_tree(self, path: str, chunk_ids: list[bytes]) -> list[dict]:
        listing = b"".join(self.read_chunk(chunk_id, BLOB_TREE) for chunk_id in chunk_ids)
        return decode_tree(f"tree of {path!r}", listing)

    # "Checking a whole pack".
    def check_packs(self) -> int:
        checked = 0
        data_dir = self._path("data")
        stored = []
        if data_dir.is_dir():
            for sub in sorted(data_dir.iterdir()):
                if not sub.is_dir() or not re.fullmatch(r"[0-9a-f]{2}", sub.name):
                    continue
                for name in self.list_names(f"data/{sub.name}"):
                    if HEX_ID.match(name) and name.startswith(sub.name):
                        stored.append(bytes.fromhex(name))
        for pack_id in self.packs:
            if pack_id not in stored:
                raise ReadError(f"pack {pack_key(pack_id)} is listed in the index but missing")
        for pack_id in stored:
            key = pack_key(pack_id)
            pack = self.get_named(key, pack_id)
            entries = decode_pack_header(key, pack, self.master, self.encrypted)
            if pack_id in self.packs:
                size, indexed = self.packs[pack_id]
                if size != len(pack):
                    raise damaged(key, f"pack is {len(pack)} bytes, the index says {size}")
                listed = set(entries)
                for entry in indexed:
                    if entry not in listed:
                        raise damaged(key, f"the index lists blob {entry.id.hex()} but the pack header does not")
            for entry in entries:
                self.decode_blob(key, entry, pack[entry.offset : entry.offset + entry.stored_length])
            checked += 1
        return checked


def check_chunker(key: str, name: str, params) -> None:
    if not isinstance(params, dict):
        raise damaged(key, f"{name} missing")
    low, avg, high = params.get("min_size"), params.get("avg_size"), params.get("max_size")
    ok = (
        is_int(low, 64, 1024 * 1024)
        and is_int(avg, 256, 4 * 1024 * 1024)
        and is_int(high, 1024, 16 * 1024 * 1024)
        and low <= avg <= high
    )
    if not ok:
        raise damaged(key, f"{name} parameters out of range: {params}")


def check_manifest(key: str, manifest) -> tuple[int, int]:
    """FORMAT.md "Manifests"; returns the backup's time for sorting."""
    if not isinstance(manifest, dict):
        raise damaged(key, "manifest is not a JSON object")
    version = manifest.get("version")
    if not is_int(version, *U32):
        raise damaged(key, f"invalid manifest version {version!r}")
    low, high = MANIFEST_VERSIONS
    if not low <= version <= high:
        raise UnsupportedVersion(
            f"unsupported manifest version {version} in {key}: this reader reads versions {low} to {high}"
        )
    for name in ("set", "writer", "hostname"):
        if not isinstance(manifest.get(name), str):
            raise damaged(key, f"{name} missing or not a string")
    time = parse_time(key, manifest.get("time"))
    parse_time(key, manifest.get("started"))
    parse_time(key, manifest.get("finished"))
    source = manifest.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("kind"), str):
        raise damaged(key, "source missing")
    parse_id_list(key, manifest.get("root"), "root")
    if manifest.get("parent") is not None:
        parse_id(key, manifest["parent"], "parent")
    stats = manifest.get("stats")
    counters = (
        "files dirs symlinks files_unchanged bytes_total bytes_read bytes_added chunks_added skipped duration_ms"
    ).split()
    if not isinstance(stats, dict) or not all(is_int(stats.get(name), *U64) for name in counters):
        raise damaged(key, "stats missing or incomplete")
    if manifest.get("status") not in ("completed", "partially_failed"):
        raise damaged(key, f"invalid status {manifest.get('status')!r}")
    return time


# --- Trees --------------------------------------------------------------------


def check_name(name) -> str | None:
    """Why `name` is unsafe, or None (FORMAT.md "Trees", name rules)."""
    if not isinstance(name, str) or not name:
        return "empty name"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as JSON's \ud800 decodes
        return "not valid UTF-8"
    if name in (".", ".."):
        return "'.' and '..' are not allowed"
    if "/" in name or "\0" in name:
        return "a name may not contain '/' or NUL"
    return None


def decode_xattrs(entry: str, value, bad) -> list[tuple[str, bytes]]:
    """A node's `xattrs` (FORMAT.md "Trees", node table) as (name, value)
    pairs; `bad(detail)` makes the damage error."""
    if not isinstance(value, list):
        raise bad(f"entry {entry!r} has invalid xattrs: not an array")
    pairs: list[tuple[str, bytes]] = []
    previous = None
    for item in value:
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str)):
            raise bad(f"entry {entry!r} has an invalid extended attribute {item!r}")
        name, text = item["name"], item["value"]
        try:
            encoded = name.encode("utf-8")
        except UnicodeEncodeError:
            encoded = None
        if not name or "\0" in name or encoded is None:
            raise bad(f"entry {entry!r} has an invalid extended attribute name {name!r}")
        if len(text) > 2 * MAX_XATTR_VALUE or not HEX_BYTES.match(text):
            raise bad(
                f"entry {entry!r}: the value of extended attribute {name!r} is not lowercase hex "
                f"of at most {MAX_XATTR_VALUE} bytes"
            )
        if previous is not None and previous >= encoded:
            raise bad(f"entry {entry!r} has extended attributes duplicated or out of order at {name!r}")
        previous = encoded
        pairs.append((name, bytes.fromhex(text)))
    return pairs


def decode_tree(what: str, listing: bytes) -> list[dict]:
    nodes: list[dict] = []
    previous = None
    offset = 0
    for line in listing.split(b"\n"):
        line_offset, offset = offset, offset + len(line) + 1
        if not line:
            continue
        node = parse_json(what, line)

        def bad(detail: str) -> Damaged:
            return damaged(what, detail, line_offset)

        if not isinstance(node, dict):
            raise bad("entry is not a JSON object")
        name = node.get("name")
        reason = check_name(name)
        if reason:
            raise bad(f"unsafe name {name!r}: {reason}")
        encoded = name.encode("utf-8")
        if previous is not None and previous >= encoded:
            raise bad(f"entry {name!r} is duplicated or out of order")
        previous = encoded
        kind = node.get("type")
        if kind not in ("file", "dir", "symlink"):
            raise bad(f"entry {name!r} has invalid type {kind!r}")
        if not is_int(node.get("mode"), 0, 0o7777) or not is_int(node.get("mtime_ns"), *I64):
            raise bad(f"entry {name!r} has an invalid mode or mtime")
        if not is_int(node.setdefault("size", 0), *U64):
            raise bad(f"entry {name!r} has an invalid size")
        for optional, bounds in (("uid", U32), ("gid", U32), ("inode", U64), ("ctime_ns", I64)):
            if node.get(optional) is not None and not is_int(node[optional], *bounds):
                raise bad(f"entry {name!r} has an invalid {optional}")
        # Manifest version 2: hard links and extended attributes. For these
        # fields `null` is invalid, not absent.
        if "links" in node and not is_int(node["links"], 2, U64[1]):
            raise bad(f"entry {name!r} has an invalid links {node['links']!r} (a link count of 2 or more)")
        if "dev" in node and not is_int(node["dev"], *U64):
            raise bad(f"entry {name!r} has an invalid dev")
        node["xattrs"] = decode_xattrs(name, node.get("xattrs", []), bad)
        hard_link_fields = ("links" in node, "dev" in node)
        node["content"] = parse_id_list(what, node.get("content", []), "content")
        subtree, target = node.get("subtree"), node.get("target")
        if subtree is not None:
            node["subtree"] = parse_id_list(what, subtree, "subtree")
        if target is not None and not isinstance(target, str):
            raise bad(f"entry {name!r} has an invalid target")
        fits = {
            "file": subtree is None and target is None and hard_link_fields in ((True, True), (False, False)),
            "dir": subtree is not None
            and not node["content"]
            and target is None
            and node["size"] == 0
            and hard_link_fields == (False, False),
            "symlink": target is not None
            and not node["content"]
            and subtree is None
            and node["size"] == 0
            and hard_link_fields == (False, False)
            and not node["xattrs"],
        }[kind]
        if not fits:
            raise bad(f"entry {name!r} has fields that do not fit its type")
        nodes.append(node)
    return nodes


# --- Extraction ---------------------------------------------------------------

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def set_owner(fd: int, node: dict) -> None:
    """Ownership when privileged; always before the mode (FORMAT.md step 7:
    chown clears the setuid and setgid bits)."""
    if os.geteuid() == 0 and node.get("uid") is not None and node.get("gid") is not None:
        os.fchown(fd, node["uid"], node["gid"])


def hard_link_key(node: dict):
    """What makes file nodes names of one file (FORMAT.md "Hard links"):
    `links`, and the same `dev`, `inode`, `size` and `content`; None for a
    node that is no hard link (or has no `inode` to match on)."""
    if "links" not in node or node.get("inode") is None:
        return None
    return (node["dev"], node["inode"], node["size"], tuple(node["content"]))


def path_of(parts: list[str], name: str) -> str:
    return "/".join(parts + [name])


class Extractor:
    """Writes below one directory only, never through a symlink."""

    def __init__(self, repo: Repository, target: Path):
        self.repo = repo
        target.mkdir(parents=True, exist_ok=True)
        if any(target.iterdir()):
            raise ReadError(f"output directory {target} is not empty")
        self.base = os.open(target, DIR_FLAGS)
        self.files = self.dirs = self.symlinks = self.bytes = self.links = 0
        # Extended attributes the target refused: (path, name, error).
        self.refused: list[tuple[str, str, str]] = []

    def close(self) -> None:
        os.close(self.base)

    def open_dir(self, parts: list[str]) -> int:
        """An fd of the directory `parts` below the target, no symlink followed."""
        fd = os.dup(self.base)
        try:
            for part in parts:
                next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = next_fd
        except OSError:
            os.close(fd)
            raise
        return fd

    def extract(self, root: list[bytes]) -> None:
        # Iterative walk (FORMAT.md step 5); hard links once the walk has
        # seen every name of their file; directories' metadata last.
        finished_dirs: list[tuple[list[str], dict]] = []
        linked: dict[tuple, list[tuple[list[str], dict]]] = {}
        stack: list[tuple[list[str], list[bytes]]] = [([], root)]
        while stack:
            parts, chunk_ids = stack.pop()
            nodes = self.repo.load_tree("/" + "/".join(parts), chunk_ids)
            parent = self.open_dir(parts)
            try:
                for node in nodes:
                    name = node["name"]
                    if node["type"] == "dir":
                        os.mkdir(name, 0o700, dir_fd=parent)
                        self.dirs += 1
                        finished_dirs.append((parts + [name], node))
                        stack.append((parts + [name], node["subtree"]))
                    elif node["type"] == "file":
                        key = hard_link_key(node)
                        if key is None:
                            self.write_file(parent, parts, node)
                        else:
                            linked.setdefault(key, []).append((parts, node))
                    else:
                        os.symlink(node["target"], name, dir_fd=parent)
                        if os.geteuid() == 0 and node.get("uid") is not None and node.get("gid") is not None:
                            os.chown(name, node["uid"], node["gid"], dir_fd=parent, follow_symlinks=False)
                        mtime = node["mtime_ns"]
                        os.utime(name, ns=(mtime, mtime), dir_fd=parent, follow_symlinks=False)
                        self.symlinks += 1
            finally:
                os.close(parent)
        for names in linked.values():
            self.write_linked(names)
        # Deepest first, so setting a child's time or a read-only mode
        # cannot disturb or block its parent. A directory's attributes (a
        # default ACL among them) come only now, so no file written into it
        # inherited them, and before its mode (FORMAT.md "Extended
        # attributes").
        for parts, node in sorted(finished_dirs, key=lambda item: len(item[0]), reverse=True):
            fd = self.open_dir(parts)
            try:
                set_owner(fd, node)
                self.set_xattrs(fd, "/".join(parts), node)
                os.fchmod(fd, node["mode"])
                os.utime(fd, ns=(node["mtime_ns"], node["mtime_ns"]))
            finally:
                os.close(fd)

    def set_xattrs(self, fd: int, path: str, node: dict) -> None:
        """Sets a node's extended attributes on `fd`; one the target
        refuses is reported, and the item otherwise restored."""
        for name, value in node["xattrs"]:
            try:
                os.setxattr(fd, name, value)
            except OSError as error:
                self.refused.append((path, name, error.strerror or str(error)))
                print(f"warning: {path}: extended attribute {name!r} not restored: {error}", file=sys.stderr)

    def write_linked(self, names: list[tuple[list[str], dict]]) -> None:
        """The names of one file (FORMAT.md "Hard links"): the first by
        path, compared as bytes, is written; the others are linked to it."""
        names = sorted(names, key=lambda item: path_of(item[0], item[1]["name"]).encode("utf-8"))
        (first_parts, first), others = names[0], names[1:]
        parent = self.open_dir(first_parts)
        try:
            self.write_file(parent, first_parts, first)
        finally:
            os.close(parent)
        for parts, node in others:
            if not self.hard_link(first_parts, first["name"], parts, node["name"]):
                parent = self.open_dir(parts)
                try:
                    self.write_file(parent, parts, node)
                finally:
                    os.close(parent)

    def hard_link(self, first_parts: list[str], first_name: str, parts: list[str], name: str) -> bool:
        """Links `parts/name` to the restored `first_parts/first_name`,
        under a temporary name renamed into place; False if the target
        cannot make hard links (the name is then written as its own file)."""
        source = self.open_dir(first_parts)
        try:
            parent = self.open_dir(parts)
            try:
                temporary = f".read-repo-{os.urandom(8).hex()}.tmp"
                try:
                    os.link(first_name, temporary, src_dir_fd=source, dst_dir_fd=parent, follow_symlinks=False)
                except OSError as error:
                    print(
                        f"warning: {path_of(parts, name)}: cannot hard-link it to {path_of(first_parts, first_name)} "
                        f"({error}): restored as a separate file",
                        file=sys.stderr,
                    )
                    return False
                try:
                    os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
                except BaseException:
                    os.unlink(temporary, dir_fd=parent)
                    raise
            finally:
                os.close(parent)
        finally:
            os.close(source)
        self.files += 1
        self.links += 1
        return True

    def write_file(self, parent: int, parts: list[str], node: dict) -> None:
        name = node["name"]
        temporary = f".read-repo-{os.urandom(8).hex()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(temporary, flags, 0o600, dir_fd=parent)
        try:
            written = 0
            with os.fdopen(os.dup(fd), "wb") as out:
                for chunk_id in node["content"]:
                    data = self.repo.read_chunk(chunk_id, BLOB_DATA)
                    written += len(data)
                    if written > node["size"]:
                        break
                    out.write(data)
            if written != node["size"]:
                path = path_of(parts, name)
                raise damaged(f"file {path!r}", f"content is {written} bytes, the recorded size is {node['size']}")
            # Ownership, extended attributes, mode, times (FORMAT.md step 7):
            # the mode comes after an access ACL, whose mask it sets.
            set_owner(fd, node)
            self.set_xattrs(fd, path_of(parts, name), node)
            os.fchmod(fd, node["mode"])
            os.utime(fd, ns=(node["mtime_ns"], node["mtime_ns"]))
        except BaseException:
            os.close(fd)
            os.unlink(temporary, dir_fd=parent)
            raise
        os.close(fd)
        os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
        self.files += 1
        self.bytes += written


# --- Command line -------------------------------------------------------------


def read_password(path: str | None) -> bytes | None:
    if path is None:
        return None
    data = Path(path).read_bytes()
    # Like backupctl: one trailing newline is not part of the password.
    if data.endswith(b"\n"):
        data = data[:-1]
        if data.endswith(b"\r"):
            data = data[:-1]
    return data


def select_backup(backups: list[Backup], backup_set: str | None, prefix: str | None) -> Backup:
    """The backup with that id prefix, or "latest": the last completed one
    (FORMAT.md "Manifests", order and "latest")."""
    candidates = [b for b in backups if backup_set is None or b.manifest["set"] == backup_set]
    if prefix is not None:
        candidates = [b for b in candidates if b.id.hex().startswith(prefix.lower())]
        if len(candidates) > 1:
            raise ReadError(f"backup id prefix {prefix!r} is ambiguous")
    else:
        candidates = [b for b in candidates if b.manifest["status"] == "completed"]
    if not candidates:
        raise ReadError("no backup matches" if prefix is not None else "no completed backup: latest names none")
    return candidates[-1]


def open_repository(path: Path, password: bytes | None) -> Repository:
    repo = Repository(path)
    repo.open_config()
    repo.open_key(password)
    repo.load_index()
    return repo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="repository directory")
    parser.add_argument("output", type=Path, nargs="?", help="directory to extract into (must be empty or absent)")
    parser.add_argument("--password-file", help="file holding the password (encrypted repositories)")
    parser.add_argument("--set", dest="backup_set", help="the latest backup of this set (default: of any set)")
    parser.add_argument("--backup", help="the backup with this id (a unique prefix is enough)")
    parser.add_argument("--list", action="store_true", help="list the backups and exit")
    parser.add_argument("--skip-pack-check", action="store_true", help="do not read and check every pack whole")
    args = parser.parse_args(argv)
    if not args.list and args.output is None:
        parser.error("OUTPUT is required unless --list is given")
    try:
        repo = open_repository(args.repo, read_password(args.password_file))
        backups = repo.list_backups()
        if args.list:
            for backup in backups:
                m = backup.manifest
                print(f"{backup.id.hex()}  {m['time']}  {m['set']}  {m['status']}")
            return 0
        backup = select_backup(backups, args.backup_set, args.backup)
        packs = 0 if args.skip_pack_check else repo.check_packs()
        extractor = Extractor(repo, args.output)
        try:
            extractor.extract(parse_id_list("manifest", backup.manifest["root"], "root"))
        finally:
            extractor.close()
    except ReadError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"backup {backup.id.hex()[:8]} of set {backup.manifest['set']!r}: "
        f"{extractor.files} files ({extractor.links} of them hard links), {extractor.dirs} dirs, "
        f"{extractor.symlinks} symlinks, {extractor.bytes} bytes extracted; "
        f"{len(repo.blobs)} chunks indexed, {packs} packs checked"
    )
    if extractor.refused:
        print(
            f"error: {len(extractor.refused)} extended attributes were not restored (see the warnings)",
            file=sys.stderr,
        )
        return 5
    return 0


if __name__ == "__main__":
    sys.exit(main())
