"""HL7 v2 in: ORU^R01 (versions 2.2 to 2.5.1) parsed with ``hl7`` (python-hl7), mapped to
subjects and items for :class:`tracker.interop.ingest.Ingest`, and the acknowledgement.

* PID-3 identifiers (ID, assigning authority, type) go through the link table; national
  ids (type SS, NI, …) are never linked. PID-7 and PID-8 enrol a new patient.
* OBX-3 is a LOINC code (coding system ``LN`` or ``LOINC``, in the first or the alternate
  triplet) or a local code of the code map (the system is OBX-3's coding system, or the
  sending application MSH-3 when that is empty).
* OBX-5/6 value and unit (case, µ/u and ^/* variants of UCUM); a non-numeric value
  ("folgt", "pending", "<0.5") is skipped and reported.
* OBX-11: ``F`` records, ``C`` corrects the result stored for the same order and test,
  ``D`` voids it, ``P`` (and any other status) is skipped.
* The collection time is SPM-17, else OBR-7, else OBX-14; one without an offset is local
  time in the centre's zone.

Segments may end in CR, LF or CRLF; the character set comes from MSH-18, else the caller's
``encoding``, else UTF-8."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any, Literal

import hl7

from events.errors import ConcurrencyConflict, Problem
from tracker.errors import CommandRefused, ImportRefused
from tracker.interop import codes
from tracker.interop.codes import CodeMap
from tracker.interop.ingest import Ingest, Item, Outcome, Skips, Subject

VERSIONS = {"2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1"}
NATIONAL_ID_TYPES = {"SS", "SB", "NI", "NH", "PPN", "DL", "TAX"}
SEX = {"F": "female", "M": "male", "O": "other", "A": "other", "U": "unknown", "N": "unknown"}
#: MSH-18 (HL7 table 0211) -> Python codec
CHARSETS = {"ASCII": "ascii", "8859/1": "iso-8859-1", "8859/2": "iso-8859-2",
            "8859/15": "iso-8859-15", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8",
            "UNICODE": "utf-8"}
_SEGMENT_BREAK = re.compile(rb"\r\n|\n|\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_TS = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(?:(\d{2})(?:\.\d+)?)?)?"
                 r"([+-]\d{4})?$")


class Unparseable(Exception):
    """What cannot be parsed as an ORU^R01: answered ``AR``."""


@dataclass
class Message:
    control_id: str
    version: str
    sending_app: str
    facility: str
    parsed: Any  # hl7.Message
    subjects: list[Subject] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    skips: Skips = field(default_factory=Skips)


def split_messages(raw: bytes) -> list[bytes]:
    """The messages of a file: MLLP framing characters removed, a new message at each MSH."""
    text = raw.replace(b"\x0b", b"").replace(b"\x1c", b"")
    segments = [s for s in _SEGMENT_BREAK.split(text) if s.strip()]
    out: list[list[bytes]] = []
    for seg in segments:
        if seg.startswith(b"MSH") or not out:
            out.append([])
        out[-1].append(seg)
    return [b"\r".join(m) + b"\r" for m in out]


def _charset(raw: bytes, fallback: str | None) -> str:
    msh = _SEGMENT_BREAK.split(raw, maxsplit=1)[0].decode("latin-1")
    if len(msh) < 4:
        raise Unparseable("MSH: missing")
    fields = msh.split(msh[3])
    name = fields[17].split(msh[4] if len(msh) > 4 else "^")[0].strip() if len(fields) > 17 \
        else ""
    if name:
        codec = CHARSETS.get(name.upper())
        if codec is None:
            raise Unparseable(f"MSH-18: character set {name!r} is not supported")
        return codec
    return fallback or "utf-8"


def parse_message(raw: bytes, *, encoding: str | None = None) -> Message:
    """A parsed ORU^R01 with its header, or :class:`Unparseable`."""
    raw = b"\r".join(s for s in _SEGMENT_BREAK.split(raw.strip(b"\x0b\x1c\r\n")) if s) + b"\r"
    if not raw.startswith(b"MSH"):
        raise Unparseable("MSH: the message must begin with an MSH segment")
    codec = _charset(raw, encoding)
    try:
        text = raw.decode(codec)
    except (UnicodeDecodeError, LookupError):
        raise Unparseable(f"MSH-18: the message is not valid {codec}; give --encoding") \
            from None
    try:
        msg = hl7.parse(text)
        msh = msg.segment("MSH")
    except (hl7.ParseException, KeyError, IndexError, ValueError) as exc:
        raise Unparseable(f"not an HL7 v2 message ({type(exc).__name__})") from None
    mtype = (_s(msh, 9, 1, 1), _s(msh, 9, 1, 2))
    version = _s(msh, 12)
    control_id = _s(msh, 10)
    if not control_id:
        raise Unparseable("MSH-10: message control id is missing")
    if version not in VERSIONS:
        raise Unparseable(f"MSH-12: version {version!r} is not one of 2.2 to 2.5.1")
    if mtype != ("ORU", "R01"):
        raise Unparseable(f"MSH-9: {'^'.join(mtype)} is not ORU^R01")
    return Message(control_id=control_id, version=version, sending_app=_s(msh, 3, 1, 1),
                   facility=_s(msh, 4, 1, 1), parsed=msg)


def _s(segment: Any, f: int, r: int = 1, c: int = 1) -> str:
    """Field ``f``, repetition ``r``, component ``c`` (1-based; its first subcomponent) as
    text; '' when absent. python-hl7 nests only as deep as the text needs, so a plain
    string stands for its own first repetition and component."""
    try:
        value: Any = segment(f)
    except Exception:  # python-hl7 raises IndexError or KeyError past the end
        return ""
    for index in (r, c):
        if isinstance(value, str):
            return value.strip() if index == 1 else ""
        try:
            value = value(index)
        except Exception:
            return ""
    while not isinstance(value, str):
        try:
            value = value(1)
        except Exception:
            return ""
    return value.strip()


def _components(segment: Any, f: int, rep: int = 1, n: int = 6) -> list[str]:
    return [_s(segment, f, rep, c) for c in range(1, n + 1)]


def timestamp(value: str, zone: tzinfo) -> str | None:
    """An HL7 TS/DTM as an ISO date or datetime with offset (local zone when none)."""
    m = _TS.match(value.strip()) if value else None
    if m is None:
        return None
    y, mo, d, hh, mm, ss, off = m.groups()
    try:
        if hh is None:
            return date(int(y), int(mo), int(d)).isoformat()
        moment = datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss or 0))
    except ValueError:
        return None
    if off:
        sign = 1 if off[0] == "+" else -1
        from datetime import timedelta, timezone

        tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
        return moment.replace(tzinfo=tz).isoformat()
    return moment.replace(tzinfo=zone).isoformat()


def map_message(m: Message, *, code_map: CodeMap, zone: tzinfo) -> list[Problem]:
    """Fill the message's subject, items and skips; problems (answered ``AE``) for what is
    ours but wrong."""
    msg = m.parsed
    problems: list[Problem] = []
    try:
        pid = msg.segment("PID")
    except KeyError:
        return [Problem(None, f"message {m.control_id} PID", "missing")]
    authority_default = m.facility or m.sending_app
    idents: list[tuple[str, str]] = []
    try:
        reps = len(pid(3))
    except (IndexError, TypeError):
        reps = 0
    for rep in range(1, reps + 1):
        comps = _components(pid, 3, rep, 5)
        value, authority, kind = comps[0], comps[3], comps[4]
        if value and kind.upper() not in NATIONAL_ID_TYPES:
            idents.append((authority or authority_default, value))
    birth = timestamp(_s(pid, 7, 1, 1), zone)
    m.subjects.append(Subject(idents, birth_date=date.fromisoformat(birth[:10]) if birth
                              else None, sex=SEX.get(_s(pid, 8, 1, 1).upper(), "unknown"),
                              where=f"message {m.control_id} PID"))
    order_time: str | None = None
    order_key = m.control_id
    obx_count = 0
    pending: list[Item] = []
    for seg in msg:
        name = str(seg(0))
        if name == "OBR":
            _finish(pending, None)
            pending = []
            order_time = timestamp(_s(seg, 7, 1, 1), zone)
            order_key = _s(seg, 3, 1, 1) or _s(seg, 2, 1, 1) or m.control_id
        elif name == "SPM":
            spm_time = timestamp(_s(seg, 17, 1, 1), zone)
            if spm_time:
                _finish(pending, spm_time)
        elif name == "OBX":
            obx_count += 1
            item = _observation(m, seg, obx_count, code_map, zone, order_time, order_key,
                                problems)
            if item is not None:
                pending.append(item)
                m.items.append(item)
    _finish(pending, None)
    for item in m.items:
        if not item.occurred_at:
            problems.append(Problem(None, f"{item.where} OBX-14",
                                    "no collection time in SPM-17, OBR-7 or OBX-14"))
    return problems


def _finish(pending: list[Item], spm_time: str | None) -> None:
    """The specimen's collection time (SPM-17) wins over OBR-7 and OBX-14."""
    if spm_time:
        for item in pending:
            item.occurred_at = spm_time
            item.paths["occurred_at"] = "SPM-17"


def _observation(m: Message, seg: Any, n: int, code_map: CodeMap, zone: tzinfo,
                 order_time: str | None, order_key: str,
                 problems: list[Problem]) -> Item | None:
    where = f"message {m.control_id} OBX {n}"
    comps = _components(seg, 3)
    code, system, alt_code, alt_system = comps[0], comps[2], comps[3], comps[5]
    analyte = None
    loinc = None
    for c, s in ((code, system), (alt_code, alt_system)):
        if c and s.upper() in ("LN", "LOINC") and c in codes.LOINC_ANALYTES:
            analyte, loinc = codes.LOINC_ANALYTES[c], c
            break
    if analyte is None:
        for c, s in ((code, system), (alt_code, alt_system)):
            if c:
                analyte = code_map.analyte(s or m.sending_app, c)
                if analyte:
                    break
    shown = code or alt_code
    if analyte is None:
        m.skips.add("OBX", shown, "code not mapped")
        return None
    status = _s(seg, 11).upper()
    if status == "P" or status not in ("F", "C", "D"):
        m.skips.add("OBX", shown, f"result status {status or '(empty)'}")
        return None
    action: Literal["record", "void"] = "void" if status == "D" else "record"
    data: dict[str, Any] = {"analyte": analyte}
    if loinc:
        data["loinc"] = loinc
    if action == "record":
        raw_value = _s(seg, 5, 1, 1)
        if not _NUMBER.match(raw_value):
            m.skips.add("OBX", shown, "value not numeric")
            return None
        unit = codes.ucum_unit(analyte, _s(seg, 6, 1, 1))
        if unit is None:
            m.skips.add("OBX", shown, f"unit not accepted for {analyte}")
            return None
        data |= {"value": float(raw_value), "unit": unit}
    obx_time = timestamp(_s(seg, 14, 1, 1), zone)
    when, path = (order_time, "OBR-7") if order_time else (obx_time, "OBX-14")
    sub_id = _s(seg, 4)
    key = f"hl7|{m.facility or m.sending_app}|{order_key}|{loinc or shown}|{sub_id}"
    return Item(0, where, "LabResultRecorded", when or "", data, key=key, action=action,
                paths={"value": "OBX-5", "unit": "OBX-6", "occurred_at": path,
                       "analyte": "OBX-3"})


def ack(m: Message | None, code: str, problems: list[Problem], *, raw: bytes = b"") -> bytes:
    """The acknowledgement: MSA with ``code`` and, for AE/AR, an ERR segment per problem."""
    if m is not None:
        out = str(m.parsed.create_ack(code, application="CNO-TRACKER",
                                      facility=m.facility or None)).rstrip("\r")
    else:
        control = _control_id_of(raw)
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        out = f"MSH|^~\\&|CNO-TRACKER||||{stamp}||ACK|{hl7.generate_message_control_id()}|P|2.5\r"
        out += f"MSA|{code}|{control}"
    text = problems[0].reason if problems else ""
    if text:
        out += "|" + _escape(text)[:80]
    error = "207^Application internal error^HL70357" if code == "AE" \
        else "102^Data type error^HL70357"
    old_style = m is not None and m.version in ("2.2", "2.3", "2.3.1", "2.4")
    for p in problems:
        location = _location(p.field)
        said = _escape(f"{p.field}: {p.reason}")[:200]
        if old_style:  # ERR-1: segment^sequence^field^code (2.2 to 2.4)
            out += f"\rERR|{location}^{error.split('^')[0]}"
        else:          # 2.5: ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 user message
            out += f"\rERR||{location}|{error}|E||||{said}"
    return (out + "\r").encode("utf-8")


def _location(where: str) -> str:
    m = re.search(r"(OBX|PID|OBR|SPM|MSH)[ -](\d+)(?:\D+(\d+))?", where)
    if not m:
        return ""
    seg, a, b = m.groups()
    return f"{seg}^{a}^{b}" if b else f"{seg}^1^{a}"


def _escape(text: str) -> str:
    return (text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
            .replace("&", "\\T\\").replace("~", "\\R\\").replace("\r", " ").replace("\n", " "))


def _control_id_of(raw: bytes) -> str:
    try:
        first = _SEGMENT_BREAK.split(raw.strip(b"\x0b\x1c\r\n"), maxsplit=1)[0]\
            .decode("latin-1")
        if first.startswith("MSH") and len(first) > 3:
            return _escape(first.split(first[3])[9])[:50]
    except IndexError:
        pass
    return ""


@dataclass
class Received:
    """What became of one message: the acknowledgement and a PHI-free log line."""

    code: Literal["AA", "AE", "AR"]
    ack: bytes
    log: str
    outcome: Outcome | None = None
    problems: list[Problem] = field(default_factory=list)


def receive(raw: bytes, ingest: Ingest, *, code_map: CodeMap = codes.EMPTY_CODE_MAP,
            encoding: str | None = None, attempts: int = 3) -> Received:
    """Parse, map and append one message; the ack says AA, AE (with ERR) or AR. The entry
    point of the MLLP listener (and of any other transport)."""
    try:
        m = parse_message(raw, encoding=encoding)
    except Unparseable as exc:
        problem = Problem(None, "message", str(exc))
        return Received("AR", ack(None, "AR", [problem], raw=raw),
                        f"message rejected (AR): {exc}", problems=[problem])
    problems = map_message(m, code_map=code_map, zone=ingest.protocol.zone)
    head = f"message {m.control_id} from {m.sending_app or '?'}"
    if problems:
        return Received("AE", ack(m, "AE", problems), f"{head}: AE, {problems[0]}",
                        problems=problems)
    for attempt in range(attempts):
        try:
            outcome = ingest.run(m.subjects, m.items, m.skips)
            break
        except ImportRefused as exc:
            return Received("AE", ack(m, "AE", exc.problems),
                            f"{head}: AE, {exc.problems[0]}", problems=exc.problems)
        except (ConcurrencyConflict, CommandRefused) as exc:
            if attempt == attempts - 1:
                problem = Problem(None, "message", f"try again: {type(exc).__name__}")
                return Received("AE", ack(m, "AE", [problem]), f"{head}: AE, {problem}",
                                problems=[problem])
    summary = "; ".join(outcome.summary(head)).removeprefix(head + ": ")
    return Received("AA", ack(m, "AA", []), f"{head}: AA, {summary}", outcome=outcome)


def receive_many(raws: list[bytes], ingest: Ingest, *,
                 code_map: CodeMap = codes.EMPTY_CODE_MAP,
                 encoding: str | None = None) -> list[Received]:
    """Several messages that arrived together, appended in one transaction (group commit:
    one round of look-ups and one append instead of one per message). If that batch is
    refused, each message is taken on its own, so one bad message never costs another its
    AA and every ack still speaks for its own message only."""
    if len(raws) == 1:
        return [receive(raws[0], ingest, code_map=code_map, encoding=encoding)]
    parsed: list[Message | None] = []
    for raw in raws:
        try:
            one = parse_message(raw, encoding=encoding)
        except Unparseable:
            parsed.append(None)
            continue
        problems = map_message(one, code_map=code_map, zone=ingest.protocol.zone)
        parsed.append(None if problems else one)
    batch = [m for m in parsed if m is not None]
    subjects: list[Subject] = []
    items: list[Item] = []
    for m in batch:
        offset = len(subjects)
        subjects += m.subjects
        items += [Item(i.subject + offset, i.where, i.event_type, i.occurred_at, dict(i.data),
                       i.key, i.action, dict(i.paths)) for i in m.items]
    try:
        if len(batch) < 2:
            raise ImportRefused([])
        ingest.run(subjects, items, Skips())
    except (ImportRefused, ConcurrencyConflict, CommandRefused):
        batch = []  # each on its own: its own ack, its own errors
    stored = {id(m) for m in batch}
    out: list[Received] = []
    for raw, msg in zip(raws, parsed, strict=True):
        if msg is None or id(msg) not in stored:
            out.append(receive(raw, ingest, code_map=code_map, encoding=encoding))
            continue
        head = f"message {msg.control_id} from {msg.sending_app or '?'}"
        skipped = "; ".join(msg.skips.lines())
        out.append(Received("AA", ack(msg, "AA", []),
                            f"{head}: AA, stored with {len(batch) - 1} other(s) in one "
                            f"transaction" + (f"; {skipped}" if skipped else "")))
    return out


def import_file(raw: bytes, ingest: Ingest, *, code_map: CodeMap = codes.EMPTY_CODE_MAP,
                encoding: str | None = None) -> Outcome:
    """Every message of a file, all or nothing: one refused message refuses the file."""
    subjects: list[Subject] = []
    items: list[Item] = []
    skips = Skips()
    problems: list[Problem] = []
    for index, chunk in enumerate(split_messages(raw), start=1):
        try:
            m = parse_message(chunk, encoding=encoding)
        except Unparseable as exc:
            problems.append(Problem(None, f"message #{index}", str(exc)))
            continue
        problems += map_message(m, code_map=code_map, zone=ingest.protocol.zone)
        offset = len(subjects)
        subjects += m.subjects
        for item in m.items:
            item.subject += offset
        items += m.items
        skips.counts.update(m.skips.counts)
    if not subjects and not problems:
        problems.append(Problem(None, "file", "no HL7 message found"))
    if problems:
        raise ImportRefused(problems)
    return ingest.run(subjects, items, skips)
