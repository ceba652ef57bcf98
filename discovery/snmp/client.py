"""Collect step: walk SNMP devices with pysnmp (7.x, asyncio) and hand the varbinds to parse.py.

Bounds, all of them: at most ``concurrency`` devices at once; each request waits ``timeout`` seconds
and is retried ``retries`` times (pysnmp's own transport); a table walk stops after
``MAX_ROWS_PER_TABLE`` rows and a device after ``device_seconds``, whatever it answers. The columns
of a table are walked side by side (oids.TABLE_GROUPS), so a table costs one column's requests. A device
that does not answer, refuses our credentials or breaks off is a DeviceResult with a status, never
an exception out of this module. MIBs are never loaded: OIDs are numbers (oids.py) and values are
turned into int, bytes or dotted text right here, so parse.py never sees a pysnmp type. ENTITY-MIB is
read in two steps: two columns of every entity walked, then the text columns of the chassis rows alone.

Credentials (SnmpCredentials) come from the environment or the config file, never the command line
(cli.py refuses them there); ``repr`` never shows a secret.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from discovery.snmp import oids
from discovery.snmp.models import DeviceResult
from discovery.snmp.oids import Oid
from discovery.snmp.parse import parse_walk, top_chassis

MAX_ROWS_PER_TABLE = 20_000
MAX_VARBINDS = 40  # objects asked per GETBULK (repetitions x subtrees): larger answers fragment over UDP
# Objects asked per GET of the chassis' text columns (two chassis' four): unlike GETBULK, an agent cannot
# shorten a GET's answer, and 40 strings of a stack's chassis may pass the 1,500 bytes many devices answer
# at most (the answer would be tooBig and the device partial).
CHASSIS_GET_MAX = 8
AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("DES", "AES", "AES192", "AES256")


@dataclass(frozen=True)
class SnmpCredentials:
    """v2c: ``community``; v3: ``user`` with ``auth_key`` (and ``priv_key`` for authPriv)."""

    version: str  # "2c" or "3"
    community: str | None = field(default=None, repr=False)
    user: str | None = None
    auth_key: str | None = field(default=None, repr=False)
    priv_key: str | None = field(default=None, repr=False)
    auth_protocol: str = "SHA"
    priv_protocol: str = "AES"

    def __post_init__(self) -> None:
        if self.version not in ("2c", "3"):
            raise ValueError("SNMP version must be 2c or 3")
        if self.version == "2c" and not self.community:
            raise ValueError("SNMP v2c needs a community (KARTA_SNMP_COMMUNITY or community_file in the config)")
        if self.version == "3":
            if not self.user:
                raise ValueError("SNMP v3 needs a user (KARTA_SNMP_USER or user in the config)")
            if self.priv_key and not self.auth_key:
                raise ValueError("SNMP v3 privacy needs authentication too (KARTA_SNMP_AUTH_KEY)")
            for key in (self.auth_key, self.priv_key):
                if key is not None and len(key) < 8:
                    raise ValueError("SNMP v3 keys are at least 8 characters (RFC 3414)")
            if self.auth_protocol not in AUTH_PROTOCOLS:
                raise ValueError(f"auth protocol must be one of {', '.join(AUTH_PROTOCOLS)}")
            if self.priv_protocol not in PRIV_PROTOCOLS:
                raise ValueError(f"privacy protocol must be one of {', '.join(PRIV_PROTOCOLS)}")

    def auth_data(self):
        from pysnmp.hlapi.v3arch.asyncio import CommunityData, UsmUserData
        from pysnmp.hlapi.v3arch.asyncio import auth as usm

        if self.version == "2c":
            return CommunityData(self.community, mpModel=1)
        auth = {"MD5": usm.usmHMACMD5AuthProtocol, "SHA": usm.usmHMACSHAAuthProtocol,
                "SHA224": usm.usmHMAC128SHA224AuthProtocol, "SHA256": usm.usmHMAC192SHA256AuthProtocol,
                "SHA384": usm.usmHMAC256SHA384AuthProtocol, "SHA512": usm.usmHMAC384SHA512AuthProtocol}
        priv = {"DES": usm.usmDESPrivProtocol, "AES": usm.usmAesCfb128Protocol,
                "AES192": usm.usmAesCfb192Protocol, "AES256": usm.usmAesCfb256Protocol}
        return UsmUserData(
            self.user, authKey=self.auth_key, privKey=self.priv_key,
            authProtocol=auth[self.auth_protocol] if self.auth_key else usm.usmNoAuthProtocol,
            privProtocol=priv[self.priv_protocol] if self.priv_key else usm.usmNoPrivProtocol)


@dataclass(frozen=True)
class SnmpSettings:
    credentials: SnmpCredentials
    port: int = 161
    concurrency: int = 20
    timeout: float = 2.0
    retries: int = 1
    device_seconds: float = 60.0  # one device's whole walk


class DeviceFailed(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def plain(value) -> int | bytes | str | None:
    """A pysnmp value as int, bytes or dotted text; None for noSuchObject/endOfMibView and the like."""
    from pyasn1.type import univ
    from pysnmp.proto import rfc1902

    if isinstance(value, univ.Null) or value.__class__.__name__ in ("NoSuchObject", "NoSuchInstance",
                                                                     "EndOfMibView"):
        return None
    if isinstance(value, univ.ObjectIdentifier):
        return ".".join(str(n) for n in value)
    if isinstance(value, rfc1902.IpAddress):
        return bytes(value.asOctets())
    if isinstance(value, univ.OctetString):
        return bytes(value.asOctets())
    if isinstance(value, univ.Integer):
        return int(value)
    return None


class _Session:
    """One device: its engine, transport and credentials, and the two requests a walk needs."""

    def __init__(self, engine, target, auth) -> None:
        from pysnmp.hlapi.v3arch.asyncio import ContextData

        self.engine, self.target, self.auth, self.context = engine, target, auth, ContextData()
        self.requests = 0
        self.cut: list[Oid] = []  # subtrees a bound stopped before their end

    @staticmethod
    def _check(error_indication, error_status, error_index) -> None:
        if error_indication:
            message = str(error_indication)
            lowered = message.lower()
            status = ("timeout" if "timeout" in lowered or "no snmp response" in lowered
                      else "refused" if any(w in lowered for w in ("unknown", "auth", "decrypt", "wrong"))
                      else "error")
            raise DeviceFailed(status, message[:200])
        if error_status and int(error_status) != 2:  # noSuchName (v1 semantics) ends a walk, nothing else
            # noAccess(6), authorizationError(16): the agent knows us and refuses (a v3 user needing privacy)
            status = "refused" if int(error_status) in (6, 16) else "error"
            raise DeviceFailed(status, f"SNMP error {error_status.prettyPrint()} at {error_index}")

    async def get(self, wanted: tuple[Oid, ...]) -> dict[Oid, int | bytes | str]:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, get_cmd

        self.requests += 1
        answer = await get_cmd(self.engine, self.auth, self.target, self.context,
                               *(ObjectType(ObjectIdentity(o)) for o in wanted), lookupMib=False)
        self._check(*answer[:3])
        out = {}
        for name, value in answer[3]:
            converted = plain(value)
            if converted is not None:
                out[tuple(name)] = converted
        return out

    async def walk(self, roots: tuple[Oid, ...], into: dict[Oid, int | bytes | str]) -> None:
        """GETBULK the subtrees side by side until each answer leaves its subtree.

        A GETBULK answer lists, repetition after repetition, the next object of each requested varbind
        in request order, so the i-th varbind answers ``asked[i % len(asked)]``; an agent may cut the
        answer short (its message size), which only leaves some subtrees for the next request. Bounded:
        MAX_ROWS_PER_TABLE rows per subtree and as many requests as that allows, whatever the agent says;
        a subtree a bound stopped is listed in ``cut`` (the device is then ``partial``, never complete).
        """
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, bulk_cmd

        current = {root: root for root in roots}
        rows = dict.fromkeys(roots, 0)
        asked = list(roots)
        for _ in range(MAX_ROWS_PER_TABLE):  # each turn adds a row to some subtree or ends one
            if not asked:
                return
            self.requests += 1
            repetitions = max(1, MAX_VARBINDS // len(asked))
            answer = await bulk_cmd(self.engine, self.auth, self.target, self.context, 0, repetitions,
                                    *(ObjectType(ObjectIdentity(current[root])) for root in asked), lookupMib=False)
            self._check(*answer[:3])
            done: set[Oid] = set()
            progress = False
            for position, (name, value) in enumerate(answer[3]):
                root = asked[position % len(asked)]
                if root in done:
                    continue
                key, converted = tuple(name), plain(value)
                # left the subtree, went backwards (a broken agent), ran out, or read enough
                if key[:len(root)] != root or key <= current[root] or converted is None:
                    done.add(root)
                    continue
                if rows[root] >= MAX_ROWS_PER_TABLE:
                    done.add(root)
                    self.cut.append(root)
                    continue
                into[key] = converted
                current[root], rows[root], progress = key, rows[root] + 1, True
            if not progress:
                return
            asked = [root for root in asked if root not in done]
        self.cut += asked  # out of requests with subtrees still going


async def _walk_device(engine, target: str, settings: SnmpSettings) -> DeviceResult:
    from pysnmp.hlapi.v3arch.asyncio import Udp6TransportTarget, UdpTransportTarget

    started = time.monotonic()
    try:
        transport_class = Udp6TransportTarget if ":" in target else UdpTransportTarget
        transport = await transport_class.create((target, settings.port), timeout=settings.timeout,
                                                 retries=settings.retries)
    except Exception as exc:  # noqa: BLE001 - an unresolvable name is that device's failure only
        return DeviceResult(target, "error", error=f"cannot address {target}: {type(exc).__name__}")
    session = _Session(engine, transport, settings.credentials.auth_data())
    walk: dict[Oid, int | bytes | str] = {}
    try:
        async with asyncio.timeout(settings.device_seconds):
            walk.update(await session.get(oids.SYSTEM))
            if not walk:
                return DeviceResult(target, "error", error="no system group")
            walk.update(await session.get(oids.LLDP_LOCAL))
            for group in oids.TABLE_GROUPS:
                await session.walk(group, walk)
            await _chassis_columns(session, walk)
    except DeviceFailed as exc:
        if not walk:
            return DeviceResult(target, exc.status, error=str(exc))
        return _broken_off(target, walk, str(exc), session, started)
    except TimeoutError:
        message = f"walk took over {settings.device_seconds:g}s"
        if not walk:
            return DeviceResult(target, "timeout", error=message)
        # A device that answers and runs past its time (a huge forwarding table) is no silent one: what
        # it gave counts, and as a partial walk the run ends none of the edges it did not get to.
        return _broken_off(target, walk, message, session, started)
    facts = parse_walk(target, walk)
    for root in session.cut:
        facts.warnings.append(f"table {'.'.join(map(str, root))} cut at {MAX_ROWS_PER_TABLE} rows")
        facts.truncated.append(".".join(map(str, root)))
    # A table cut short is a partial walk: a complete run would end every edge past the cut.
    return DeviceResult(target, "partial" if facts.truncated else "ok", facts=facts, requests=session.requests,
                        seconds=time.monotonic() - started,
                        error=f"{len(facts.truncated)} table(s) cut at a bound" if facts.truncated else None)


async def _chassis_columns(session: _Session, walk: dict[Oid, int | bytes | str]) -> None:
    """The text columns (serial, model, maker, software) of the top-level chassis only, by GET, at most
    CHASSIS_GET_MAX objects a request: the entity walk read two columns of every row to find them."""
    wanted = [column + (index,) for index in top_chassis(walk)[0] for column in oids.ENT_CHASSIS_COLUMNS]
    for start in range(0, len(wanted), CHASSIS_GET_MAX):
        walk.update(await session.get(tuple(wanted[start:start + CHASSIS_GET_MAX])))


def _broken_off(target: str, walk: dict[Oid, int | bytes | str], message: str, session: _Session,
                started: float) -> DeviceResult:
    """A device that answered the system group and then broke off or ran out of time: reported with what
    it gave, as ``partial`` (scope.run_is_complete: such a run ends nothing)."""
    facts = parse_walk(target, walk)
    facts.warnings.append(f"walk stopped: {message}")
    return DeviceResult(target, "partial", facts=facts, error=message, requests=session.requests,
                        seconds=time.monotonic() - started)


async def collect_devices_async(targets: list[str], settings: SnmpSettings,
                                on_result: Callable[[DeviceResult], None] | None = None) -> list[DeviceResult]:
    from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

    engine = SnmpEngine()
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(target: str) -> DeviceResult:
        async with gate:
            try:
                result = await _walk_device(engine, target, settings)
            except Exception as exc:  # noqa: BLE001 - one device's surprise must not cost the others
                result = DeviceResult(target, "error", error=f"internal error: {type(exc).__name__}")
        if on_result is not None:
            on_result(result)
        return result

    try:
        return list(await asyncio.gather(*(one(t) for t in targets)))
    finally:
        engine.close_dispatcher()


def collect_devices(targets: list[str], settings: SnmpSettings,
                    on_result: Callable[[DeviceResult], None] | None = None) -> list[DeviceResult]:
    return asyncio.run(collect_devices_async(targets, settings, on_result))
