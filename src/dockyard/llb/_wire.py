"""Canonical serialization: what Go's ``proto.MarshalOptions{Deterministic: true}`` writes.

Fields are written in field-number order and map entries sorted by key, bytewise, with
both key and value always present — the output of BuildKit's Go client for the same
message. The protobuf runtime's own deterministic mode orders fields the same way, but
sorts map keys differently (upb puts ``"ab"`` before ``"a"``), and op digests must not
depend on such a detail of one runtime version, so messages that contain maps are
assembled here; everything else is serialized by the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.protobuf.descriptor import Descriptor, FieldDescriptor
    from google.protobuf.message import Message

__all__ = ["serialize"]

_HAS_MAP: dict[str, bool] = {}


def serialize(message: Message) -> bytes:
    """The canonical bytes of ``message`` (unknown fields are not written)."""
    if not _has_map(message.DESCRIPTOR):  # type: ignore[arg-type]
        return bytes(message.SerializeToString(deterministic=True))
    parts: list[bytes] = []
    for field, value in sorted(message.ListFields(), key=lambda item: item[0].number):
        if _is_map(field):
            parts.extend(_map_entries(field, value))
        elif field.type == field.TYPE_MESSAGE:
            items = value if _is_repeated(field) else [value]
            parts.extend(_length_delimited(field.number, serialize(item)) for item in items)
        else:
            single = type(message)()
            if _is_repeated(field):
                getattr(single, field.name).extend(value)
            else:
                setattr(single, field.name, value)
            parts.append(bytes(single.SerializeToString()))
    return b"".join(parts)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return (
        entry is not None
        and field.type == field.TYPE_MESSAGE
        and _is_repeated(field)
        and bool(entry.GetOptions().map_entry)
    )


def _has_map(descriptor: Descriptor, _visiting: frozenset[str] = frozenset()) -> bool:
    name = descriptor.full_name
    cached = _HAS_MAP.get(name)
    if cached is not None:
        return cached
    if name in _visiting:  # recursive types (Definition inside SourceInfo)
        return False
    result = False
    for field in descriptor.fields:
        if field.type != field.TYPE_MESSAGE or field.message_type is None:
            continue
        if _is_map(field) or _has_map(field.message_type, _visiting | {name}):
            result = True
            break
    _HAS_MAP[name] = result
    return result


def _map_entries(field: FieldDescriptor, value: Any) -> list[bytes]:
    entry_type = field.message_type
    assert entry_type is not None
    key_field = entry_type.fields_by_name["key"]
    value_field = entry_type.fields_by_name["value"]
    out = []
    for key in sorted(value, key=_sort_key):
        entry = _scalar(key_field, key)
        item = value[key]
        if value_field.type == value_field.TYPE_MESSAGE:
            entry += _length_delimited(2, serialize(item))
        else:
            entry += _scalar(value_field, item)
        out.append(_length_delimited(field.number, entry))
    return out


def _sort_key(key: Any) -> Any:
    # Go compares strings bytewise; comparing the UTF-8 bytes says exactly that.
    return key.encode() if isinstance(key, str) else key


def _scalar(field: FieldDescriptor, value: Any) -> bytes:
    """A map key or value field, written even when it is the default (as Go does)."""
    number = field.number
    if field.type in (field.TYPE_STRING, field.TYPE_BYTES):
        data = value.encode() if isinstance(value, str) else bytes(value)
        return _length_delimited(number, data)
    if field.type == field.TYPE_BOOL:
        return _varint(number << 3) + _varint(1 if value else 0)
    if field.type in (
        field.TYPE_INT32,
        field.TYPE_INT64,
        field.TYPE_UINT32,
        field.TYPE_UINT64,
        field.TYPE_ENUM,
    ):
        return _varint(number << 3) + _varint(int(value))
    raise TypeError(f"unsupported map field type {field.type} ({field.full_name})")


def _length_delimited(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
