"""Plain records passed between the pipeline steps (collect, parse, classify, build).

They hold facts as the agent understood them, already sanitized; they know
nothing of HTTP, JSON or the CMDB's identification rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str | None = None
    state: str | None = None
    mtu: int | None = None
    kind: str | None = None  # link type as ip(8) says it: ether, loopback, none...


@dataclass(frozen=True)
class InterfaceAddress:
    interface: str
    address: str
    prefix_length: int | None
    family: str  # "inet" or "inet6"
    scope: str | None = None


@dataclass(frozen=True)
class Listener:
    """A TCP socket in LISTEN state and the processes that hold it."""

    address: str  # "0.0.0.0", "::", "*" or a concrete address
    port: int
    process: str | None = None
    pids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Connection:
    """An established TCP connection seen from this host."""

    local_address: str
    local_port: int
    peer_address: str
    peer_port: int
    process: str | None = None
    pids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Filesystem:
    device: str
    fstype: str
    mountpoint: str
    size_kb: int
    used_kb: int


@dataclass(frozen=True)
class Disk:
    name: str
    size_bytes: int
    model: str | None = None
    serial: str | None = None
    rotational: bool | None = None


@dataclass
class HostFacts:
    """What one host told us about itself."""

    target: str  # how we reached it: address or name given by the operator
    hostname: str | None = None
    fqdn: str | None = None
    os_id: str | None = None
    os_version: str | None = None
    os_pretty_name: str | None = None
    kernel: str | None = None
    architecture: str | None = None
    machine_id: str | None = None
    serial_number: str | None = None
    product_uuid: str | None = None
    vendor: str | None = None
    product_name: str | None = None
    virtualization: str | None = None
    cpu_count: int | None = None
    cpu_model: str | None = None
    memory_mb: int | None = None
    swap_mb: int | None = None
    disks: list[Disk] = field(default_factory=list)
    filesystems: list[Filesystem] = field(default_factory=list)
    interfaces: list[Interface] = field(default_factory=list)
    addresses: list[InterfaceAddress] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    ephemeral_ports: tuple[int, int] = (32768, 60999)
    # pid -> command line. Used only to name interpreted applications; command
    # lines can hold secrets, so they never leave the agent.
    command_lines: dict[int, str] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)
    packages: list[tuple[str, str]] | None = None
    warnings: list[str] = field(default_factory=list)

    def own_addresses(self) -> set[str]:
        return {a.address for a in self.addresses}


@dataclass
class HostResult:
    """The outcome of collecting one target; facts only when something was read."""

    target: str
    status: str  # ok, partial, unreachable, auth_failed, host_key_unknown, host_key_mismatch, timeout, error
    message: str = ""
    facts: HostFacts | None = None
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return self.status == "ok"


@dataclass
class ScanPort:
    port: int
    protocol: str
    state: str
    service: str | None = None
    product: str | None = None
    version: str | None = None


@dataclass
class ScanHost:
    """A live address found by nmap."""

    address: str
    mac: str | None = None
    vendor: str | None = None
    hostname: str | None = None
    ports: list[ScanPort] = field(default_factory=list)
    os_name: str | None = None
    os_accuracy: int | None = None
    os_family: str | None = None
    os_types: list[str] = field(default_factory=list)
    os_vendors: list[str] = field(default_factory=list)
